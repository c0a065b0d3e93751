using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.ModelServer.Protocol;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// Every element type the protocol names and ONNX Runtime runs, in and out, as JSON and as binary data:
/// hand-built Identity models of each type give back what they were sent.
/// </summary>
[Collection("serving")]
public sealed class DataTypeTests : IDisposable
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-datatypes-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    /// <summary>Each type, ONNX's number for it, three JSON values at its edges, and one value it cannot hold.</summary>
    public static TheoryData<string, int, string, string> Types => new()
    {
        { "BOOL", 9, "[true,false,true]", "1" },
        { "UINT8", 2, "[0,200,255]", "256" },
        { "UINT16", 4, "[0,40000,65535]", "-1" },
        { "UINT32", 12, "[0,4000000000,4294967295]", "4294967296" },
        { "UINT64", 13, "[0,5,18446744073709551615]", "-5" },
        { "INT8", 3, "[-128,0,127]", "128" },
        { "INT16", 5, "[-32768,5,32767]", "40000" },
        { "INT32", 6, "[-2147483648,5,2147483647]", "2.5" },
        { "INT64", 7, "[-9223372036854775808,5,9223372036854775807]", "2.5" },
        { "FP16", 10, "[0.5,-2,65504]", "100000" },
        { "BF16", 16, "[1.5,-2,3.3895314E+38]", "1e39" },
        { "FP32", 1, "[0.25,-3.5,3.4028235E+38]", "1e39" },
        { "FP64", 11, "[0.1,-3.5,1.7976931348623157E+308]", "true" },
        { "BYTES", 8, "[\"a\",\"\",\"wörld\"]", "5" },
    };

    [Theory]
    [MemberData(nameof(Types))]
    public async Task Each_type_round_trips_as_json_and_as_binary(string datatype, int onnxType, string values, string invalid)
    {
        string model = IdentityModels.Write(directory, $"{datatype}.onnx", onnxType, "batch", 3);
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(model, name: "identity", maxBatch: 4, maxQueueDelayMs: 0));

        var metadata = JsonNode.Parse(await server.Client.GetStringAsync("/v2/models/identity", Cancel))!;
        Assert.Equal(datatype, metadata["inputs"]![0]!["datatype"]!.GetValue<string>());
        // Its warm-up requests, zeros (empty strings) as JSON and as binary data, were served.
        Assert.True(await server.Metric("adaptive_model_warmup_duration_seconds{model=\"identity\",variant=\"resnet18\"}") > 0);

        string body = $"{{\"inputs\":[{{\"name\":\"x\",\"datatype\":\"{datatype}\",\"shape\":[1,3],\"data\":{values}}}]}}";
        var json = await server.Client.PostAsync("/v2/models/identity/infer", V2.Json(body), Cancel);
        string answer = await json.Content.ReadAsStringAsync(Cancel);
        Assert.True(json.StatusCode == HttpStatusCode.OK, answer);
        var output = JsonNode.Parse(answer)!["outputs"]![0]!;
        Assert.Equal(datatype, output["datatype"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(Numbers(JsonNode.Parse(values)!), Numbers(output["data"]!)), $"sent {values}, got {output["data"]!.ToJsonString()}");

        // The same values as raw bytes, asked back as raw bytes: the very same bytes.
        var type = TensorDataTypes.FromProtocolName(datatype)!.Value;
        byte[] raw = type switch
        {
            TensorDataType.Bool => [1, 0, 1],
            TensorDataType.Bytes => Encoded([1], [], [2, 3]),
            _ => [.. Enumerable.Range(0, 3 * type.ElementSize()).Select(i => (byte)(i * 37 % 251))],
        };
        var binary = await server.Client.PostAsync("/v2/models/identity/infer", V2.Binary(
            $"{{\"inputs\":[{{\"name\":\"x\",\"datatype\":\"{datatype}\",\"shape\":[1,3],\"parameters\":{{\"binary_data_size\":{raw.Length}}}}}],\"parameters\":{{\"binary_data_output\":true}}}}", raw), Cancel);
        Assert.Equal(HttpStatusCode.OK, binary.StatusCode);
        byte[] bytes = await binary.Content.ReadAsByteArrayAsync(Cancel);
        int headerLength = int.Parse(binary.Headers.GetValues("Inference-Header-Content-Length").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(raw, bytes[headerLength..]);

        // A value the type cannot hold is the client's error.
        var refused = await server.Client.PostAsync("/v2/models/identity/infer", V2.Json(body.Replace(values, $"[{invalid},{invalid},{invalid}]")), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains($"data element 0 is not a", await V2.Error(refused));
    }

    /// <summary>BYTES elements in binary: each one's length (4 bytes, little-endian), then its bytes.</summary>
    static byte[] Encoded(params byte[][] elements) => [.. elements.SelectMany(e => BitConverter.GetBytes(e.Length).Concat(e))];

    /// <summary>A BYTES encoding whose lengths do not add up is the client's error.</summary>
    [Fact]
    public async Task Bytes_whose_lengths_do_not_add_up_are_refused()
    {
        string model = IdentityModels.Write(directory, "bytes.onnx", 8, "batch", 3);
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(model, name: "identity", maxBatch: 4, maxQueueDelayMs: 0));
        byte[] overrun = Encoded([0, 1, 2], [], Encoding.UTF8.GetBytes("tokens"));
        overrun[0] = 200; // the first element claims 200 bytes
        var refused = await server.Client.PostAsync("/v2/models/identity/infer",
            V2.Binary($"{{\"inputs\":[{{\"name\":\"x\",\"datatype\":\"BYTES\",\"shape\":[1,3],\"parameters\":{{\"binary_data_size\":{overrun.Length}}}}}]}}", overrun), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("element 0 claims 200 bytes", await V2.Error(refused));
    }

    /// <summary>JSON values compared as numbers (1.5 and 1.50 alike; integers exactly), booleans as they are.</summary>
    static JsonArray Numbers(JsonNode data) => new([.. data.AsArray().Select(v => v!.GetValueKind() != JsonValueKind.Number ? v.DeepClone()
        : System.Numerics.BigInteger.TryParse(v.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture, out var integer) ? JsonValue.Create(integer.ToString(System.Globalization.CultureInfo.InvariantCulture))
        : JsonValue.Create(double.Parse(v.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)))]);
}
