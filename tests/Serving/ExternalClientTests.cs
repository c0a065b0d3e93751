using System.Net;
using System.Text.Json.Nodes;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Routing;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The model server checked by clients nobody here wrote (<see cref="OipConformance"/>): @grpc/grpc-js with
/// the spec's own .proto gets over gRPC what REST gives for the same input, and every kind of REST body the
/// server gives validates against the spec's OpenAPI schemas.
/// </summary>
[Collection("serving")]
public sealed class ExternalClientTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static long[] ImageShape(int rows) => [rows, 3, TestModels.Resolution, TestModels.Resolution];

    static float[] Floats(JsonNode? base64) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(Convert.FromBase64String((string)base64!)).ToArray();

    /// <summary>What the clients call: a model server, or a router in front of it serving the pipeline "images" of one stage.</summary>
    sealed class Target(RunningServer model, RunningServer? router, DirectoryInfo directory) : IAsyncDisposable
    {
        public RunningServer Server => router ?? model;
        public string Name => router is null ? "classify" : "images";

        public static async Task<Target> Start(TestModels models, bool throughTheRouter)
        {
            var model = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
            var directory = Directory.CreateTempSubdirectory("adaptive-router-");
            if (!throughTheRouter) return new Target(model, null, directory);
            string config = Path.Combine(directory.FullName, "routes.json");
            File.WriteAllText(config, new RouterConfig("images", [new StageRoute("classify", [new VariantRoute("resnet18", model.Address.ToString(), 1)])]).Write());
            var router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http() with { GrpcPort = 0 }, config, TimeSpan.FromSeconds(1), 64));
            return new Target(model, router, directory);
        }

        public async ValueTask DisposeAsync()
        {
            if (router is not null) await router.DisposeAsync();
            await model.DisposeAsync();
            directory.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_grpc_js_client_with_the_published_proto_gets_what_rest_gives(bool throughTheRouter)
    {
        await using var target = await Target.Start(models, throughTheRouter);
        var (server, name) = (target.Server, target.Name);
        var images = models.Images(2, seed: 9);
        var rest = await server.Client.PostAsync($"/v2/models/{name}/infer", V2.Json(V2.Request("input", ImageShape(2), images)), Cancel);
        var expected = await V2.Output(rest, "logits");

        var calls = OipConformance.GrpcCalls($"{server.GrpcAddress!.Host}:{server.GrpcAddress.Port}", name, "js-1", "input", ImageShape(2), images);

        Assert.True((bool)calls["serverLive"]!["live"]!);
        Assert.True((bool)calls["serverReady"]!["ready"]!);
        Assert.True((bool)calls["modelReady"]!["ready"]!);
        Assert.Equal("adaptive-server", (string?)calls["serverMetadata"]!["name"]);
        var metadata = calls["modelMetadata"]!;
        Assert.Equal(throughTheRouter ? "ensemble" : "onnx_onnxv1", (string?)metadata["platform"]);
        Assert.Equal("input", (string?)metadata["inputs"]![0]!["name"]);
        Assert.Equal(["-1", "3", "32", "32"], metadata["inputs"]![0]!["shape"]!.AsArray().Select(d => (string)d!));
        foreach (string call in new[] { "inferRaw", "inferTyped" })
        {
            var answer = calls[call]!;
            Assert.True(answer["outputs"] is JsonArray, $"{call}: {answer.ToJsonString()}");
            Assert.Equal((name, "js-1"), ((string?)answer["model_name"], (string?)answer["id"]));
            Assert.Equal("logits", (string?)answer["outputs"]![0]!["name"]);
            Assert.Equal(["2", "1000"], answer["outputs"]![0]!["shape"]!.AsArray().Select(d => (string)d!));
            Assert.Equal(expected, Floats(answer["raw_output_contents"]![0]));
        }
        Assert.Equal("NOT_FOUND", (string?)calls["unknownModel"]!["code"]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Every_rest_body_validates_against_the_published_schemas(bool throughTheRouter)
    {
        await using var target = await Target.Start(models, throughTheRouter);
        var (server, name) = (target.Server, target.Name);
        string image = V2.Request("input", ImageShape(1), models.Images(1, seed: 4), id: "r-1");

        async Task<JsonNode> Body(HttpResponseMessage response, HttpStatusCode status)
        {
            Assert.Equal(status, response.StatusCode);
            return JsonNode.Parse(await response.Content.ReadAsStringAsync(Cancel))!;
        }

        var binaryRequest = JsonNode.Parse(image)!;
        binaryRequest["parameters"] = new JsonObject { ["binary_data_output"] = true };
        var binary = await server.Client.PostAsync($"/v2/models/{name}/infer", V2.Json(binaryRequest.ToJsonString()), Cancel);
        Assert.Equal(HttpStatusCode.OK, binary.StatusCode);
        byte[] binaryBody = await binary.Content.ReadAsByteArrayAsync(Cancel);
        int headerLength = int.Parse(binary.Headers.GetValues("Inference-Header-Content-Length").Single(), System.Globalization.CultureInfo.InvariantCulture);

        var bodies = new List<OipConformance.Body>
        {
            new("server metadata", "metadata_server_response", await Body(await server.Client.GetAsync("/v2", Cancel), HttpStatusCode.OK)),
            new("model metadata", "metadata_model_response", await Body(await server.Client.GetAsync($"/v2/models/{name}/versions/1", Cancel), HttpStatusCode.OK)),
            new("unknown model's metadata", "metadata_model_error_response", await Body(await server.Client.GetAsync("/v2/models/other", Cancel), HttpStatusCode.NotFound)),
            new("inference", "inference_response", await Body(await server.Client.PostAsync($"/v2/models/{name}/infer", V2.Json(image), Cancel), HttpStatusCode.OK)),
            new("binary inference's header", "inference_response", JsonNode.Parse(binaryBody.AsSpan(0, headerLength))!, Binary: true),
            new("a malformed request", "inference_error_response", await Body(await server.Client.PostAsync($"/v2/models/{name}/infer", V2.Json("{\"inputs\": 3}"), Cancel), HttpStatusCode.BadRequest)),
            new("an unknown model's inference", "inference_error_response", await Body(await server.Client.PostAsync("/v2/models/other/infer", V2.Json(image), Cancel), HttpStatusCode.NotFound)),
            new("an unrouted path", "inference_error_response", await Body(await server.Client.GetAsync("/v2/unknown", Cancel), HttpStatusCode.NotFound)),
        };

        Assert.Empty(OipConformance.SchemaViolations(bodies));
        // The check can fail: a body missing what the schema requires is caught.
        Assert.Single(OipConformance.SchemaViolations([new("no versions or platform", "metadata_model_response", new JsonObject { ["name"] = "classify" })]));
    }
}
