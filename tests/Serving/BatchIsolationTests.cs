using System.Runtime.InteropServices;
using System.Text.Json;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// A model with a dynamic dimension besides the batch one takes requests of several shapes; the batcher
/// must never stack those, or one client's rows reach another (shape [1,2] and [1,4] once came back as
/// [5,6,106,107]: the tail of an earlier request).
/// </summary>
[Collection("serving")]
public sealed class BatchIsolationTests : IDisposable
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-identity-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    static HttpContent Json(long id, int length) =>
        V2.Json(JsonSerializer.Serialize(new { id = id.ToString(System.Globalization.CultureInfo.InvariantCulture), inputs = new[] { new { name = "x", shape = new[] { 1, length }, datatype = "FP32", data = Row(id, length) } } }));

    static HttpContent Binary(long id, int length) => V2.Binary(JsonSerializer.Serialize(new
    {
        id = id.ToString(System.Globalization.CultureInfo.InvariantCulture),
        inputs = new[] { new { name = "x", shape = new[] { 1, length }, datatype = "FP32", parameters = new { binary_data_size = 4 * length } } },
    }), MemoryMarshal.AsBytes(Row(id, length).AsSpan()));

    /// <summary>A row only this request has: its id, then the id plus 1, 2, … as many as its length.</summary>
    static float[] Row(long id, int length) => [.. Enumerable.Range(0, length).Select(i => (float)(id * 100 + i))];

    [Fact]
    public async Task Interleaved_shapes_under_concurrency_each_get_exactly_their_own_rows()
    {
        string model = IdentityModels.Write(directory, "identity.onnx", IdentityModels.Float, "batch", "length");
        // A long queue delay and a large batch: every request waits with others of other shapes.
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(model, name: "identity", maxBatch: 8, maxQueueDelayMs: 50, queueCapacity: 256));
        int[] lengths = [2, 4, 3, 2, 4, 1];
        var calls = Enumerable.Range(0, 240).Select(async i =>
        {
            int length = lengths[i % lengths.Length];
            bool binary = i % 3 == 0;
            using var response = await server.Client.PostAsync("/v2/models/identity/infer", binary ? Binary(i, length) : Json(i, length), Cancel);
            string body = await response.Content.ReadAsStringAsync(Cancel);
            Assert.True(response.IsSuccessStatusCode, $"request {i}: {(int)response.StatusCode} {body}");
            using var json = JsonDocument.Parse(body);
            var output = json.RootElement.GetProperty("outputs")[0];
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), json.RootElement.GetProperty("id").GetString());
            Assert.Equal([1, length], output.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()));
            Assert.Equal(Row(i, length), output.GetProperty("data").EnumerateArray().Select(v => v.GetSingle()));
        });
        await Task.WhenAll(calls);
        // And they were batched: requests of one shape still share calls.
        Assert.True(await server.Metric("adaptive_model_batch_size_count{model=\"identity\",variant=\"resnet18\"}") < 240);
    }
}
