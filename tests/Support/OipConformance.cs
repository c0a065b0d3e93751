using System.Text.Json;
using System.Text.Json.Nodes;

namespace Adaptive.Tests.Support;

/// <summary>
/// Clients of the Open Inference Protocol that this project did not write (tools/oip-conformance, npm packages
/// that ./test.sh installs): @grpc/grpc-js loading the published .proto, and Ajv checking bodies against the
/// published OpenAPI schemas, both from ../shared/specs/open-inference-protocol. Tests that need them skip,
/// with the reason, where either is absent.
/// </summary>
static class OipConformance
{
    static string Tool(string script)
    {
        string path = RepoPaths.Of("tools", "oip-conformance", script);
        if (!Directory.Exists(RepoPaths.Of("tools", "oip-conformance", "node_modules", "@grpc", "grpc-js")))
            Assert.Skip($"the npm packages of tools/oip-conformance are not installed: run ./test.sh, which installs them");
        return path;
    }

    static string Spec(string file) => RepoPaths.SharedOrSkip("specs", "open-inference-protocol", file);

    /// <summary>
    /// Runs the grpc-js client against <paramref name="address"/> (host:port) for <paramref name="model"/> with one FP32
    /// input; its answers as JSON (bytes in base64, int64 as strings).
    /// </summary>
    public static JsonObject GrpcCalls(string address, string model, string id, string input, long[] shape, float[] data)
    {
        string proto = Spec("open_inference_grpc.proto"), script = Tool("grpc-client.mjs");
        string request = Path.GetTempFileName();
        try
        {
            File.WriteAllText(request, JsonSerializer.Serialize(new
            {
                model, id,
                inputs = new[] { new { name = input, datatype = "FP32", shape, raw = Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())) } },
            }));
            return JsonNode.Parse(Node(script, proto, address, request))!.AsObject();
        }
        finally
        {
            File.Delete(request);
        }
    }

    /// <summary>A body to check against a schema of the published OpenAPI file; <paramref name="Binary"/>: the header of a binary-extension answer.</summary>
    public sealed record Body(string Name, string Schema, JsonNode Value, bool Binary = false);

    /// <summary>The bodies that do not validate, each with Ajv's reasons; empty when all do.</summary>
    public static IReadOnlyList<string> SchemaViolations(IEnumerable<Body> bodies)
    {
        string openApi = Spec("open_inference_rest.yaml"), script = Tool("validate-rest.mjs");
        string file = Path.GetTempFileName();
        try
        {
            var list = bodies.Select(b => new JsonObject { ["name"] = b.Name, ["schema"] = b.Schema, ["body"] = b.Value.DeepClone(), ["binary"] = b.Binary }).ToArray();
            File.WriteAllText(file, new JsonArray(list).ToJsonString());
            var results = JsonNode.Parse(Node(script, openApi, file))!.AsArray();
            Assert.Equal(list.Length, results.Count);
            return [.. results.Where(r => !(bool)r!["valid"]!).Select(r => $"{r!["name"]}: {r["errors"]!.ToJsonString()}")];
        }
        finally
        {
            File.Delete(file);
        }
    }

    static string Node(params string[] args)
    {
        var result = ChildProcess.Run("node", args, TimeSpan.FromSeconds(60));
        Assert.True(result.ExitCode == 0, $"node {Path.GetFileName(args[0])} exited {result.ExitCode}: {result.Stderr}");
        return result.Stdout;
    }
}
