using System.Net;
using System.Text;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>Bad requests get a 4xx whose message names the problem, and the server carries on.</summary>
[Collection("serving")]
public sealed class BadInputTests(TestModels models) : IAsyncLifetime
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    RunningServer server = null!;

    public async ValueTask InitializeAsync() =>
        server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 4, http: RunningServer.Http(maxBodyBytes: 256 * 1024)));

    public async ValueTask DisposeAsync() => await server.DisposeAsync();

    string Image(string name = "\"input\"", string datatype = "\"FP32\"", string shape = "[1,3,32,32]", string? data = null, int padding = 0) =>
        $"{{\"inputs\":[{{\"name\":{name},\"shape\":{shape},\"datatype\":{datatype},\"pad\":\"{new string('x', padding)}\",\"data\":{data ?? "[" + string.Join(",", models.Images(1, 0).Select(f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture))) + "]"}}}]}}";

    public static TheoryData<string, int, string> Cases => new()
    {
        { "not json", 400, "malformed JSON" },
        { "{\"inputs\": [", 400, "malformed JSON" },
        { "[]", 400, "must be a JSON object" },
        { "{}", 400, "'inputs' is required" },
        { "{\"inputs\": {}}", 400, "'inputs' must be an array" },
        { "name:\"image\"", 400, "unknown input 'image'; the model's inputs are input" },
        { "name:123", 400, "inputs[0].name must be a string" },
        { "datatype:\"FP64\"", 400, "input 'input' has datatype FP64, the model expects FP32" },
        { "datatype:\"COMPLEX64\"", 400, "datatype 'COMPLEX64' is not supported" },
        { "datatype:\"BYTES\"", 400, "input 'input' has datatype BYTES, the model expects FP32" },
        { "shape:[1,3,1024]", 400, "input 'input' has shape [1,3,1024], the model expects [-1,3,32,32] (-1: any size)" },
        { "shape:[1,3,32]", 400, "input 'input' has shape [1,3,32], the model expects [-1,3,32,32]" },
        { "shape:[1,3,32,31]", 400, "input 'input' has shape [1,3,32,31], the model expects [-1,3,32,32]" },
        { "shape:[2,3,32,32]", 400, "data has 3072 elements, shape [2,3,32,32] needs 6144" },
        { "shape:[1,-3,32,32]", 400, "shape must be an array of non-negative integers" },
        { "shape:[100000,3,32,32]", 400, "input 'input' has 100000 rows, more than the max batch size 4" },
        { "shape:[2147483647,2147483647,2147483647,2147483647]", 400, "holds more elements than any tensor can" },
        { "shape:[0,3,32,32]", 400, "data has more than the 0 elements" },
        // Padded so that the body could carry the shape's 3072 elements: the data itself is what is wrong.
        { "data:[\"a\"]|pad:8000", 400, "data element 0 is not a number" },
        { "data:[1e999]|pad:8000", 400, "data element 0 is not a valid FP32 value" },
        { "data:{}|pad:8000", 400, "data must be an array" },
        { "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,3,32,32],\"datatype\":\"FP32\"}]}", 400, "data is required" },
        { "{\"inputs\":[{\"name\":\"input\",\"datatype\":\"FP32\",\"data\":[1]}]}", 400, "shape is required" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Bad_request_gets_a_4xx_naming_the_problem(string mutation, int status, string message)
    {
        string body = mutation.Contains(':') && !mutation.StartsWith('{') ? Mutate(mutation.Split('|')) : mutation;
        var response = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Contains(message, await V2.Error(response));
    }

    /// <summary>A valid request with fields replaced: each mutation is <c>field:json</c>.</summary>
    string Mutate(string[] mutations)
    {
        var fields = mutations.ToDictionary(m => m[..m.IndexOf(':')], m => m[(m.IndexOf(':') + 1)..]);
        foreach (var field in fields.Keys)
            if (field is not ("name" or "datatype" or "shape" or "data" or "pad")) throw new ArgumentException(field);
        return Image(fields.GetValueOrDefault("name", "\"input\""), fields.GetValueOrDefault("datatype", "\"FP32\""),
            fields.GetValueOrDefault("shape", "[1,3,32,32]"), fields.GetValueOrDefault("data"), int.Parse(fields.GetValueOrDefault("pad", "0"), System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task Unknown_model_body_too_large_and_missing_input_are_refused()
    {
        var unknown = await server.Client.PostAsync("/v2/models/detector/infer", V2.Json(Image()), Cancel);
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("unknown model 'detector'; this server serves 'classify'", await V2.Error(unknown));

        var large = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(new string(' ', 300 * 1024) + Image()), Cancel);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, large.StatusCode);
        Assert.Equal("the request body is larger than the 262144-byte limit", await V2.Error(large));

        var chunked = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(new string(' ', 300 * 1024))));
        var largeChunked = await server.Client.PostAsync("/v2/models/classify/infer", chunked, Cancel);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, largeChunked.StatusCode);

        var twice = await server.Client.PostAsync("/v2/models/classify/infer",
            V2.Json(Image().Replace("]}]}", "]},{\"name\":\"input\",\"shape\":[1],\"datatype\":\"FP32\",\"data\":[1]}]}")), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, twice.StatusCode);

        var unknownOutput = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(Image().TrimEnd('}') + ",\"outputs\":[{\"name\":\"probs\"}]}"), Cancel);
        Assert.Equal("unknown output 'probs'; the model's outputs are logits", await V2.Error(unknownOutput));
    }

    [Fact]
    public async Task Nested_data_and_data_before_datatype_are_read()
    {
        // Nested as the shape [1,3,32,32] is: one image of three channels of 32 rows of 32.
        var values = models.Images(1, 0).Select(f => f.ToString("R", System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        string Rows(int channel) => string.Join(",", Enumerable.Range(0, 32).Select(r => $"[{string.Join(",", values.Skip((channel * 32 + r) * 32).Take(32))}]"));
        string nested = $"[[{string.Join(",", Enumerable.Range(0, 3).Select(c => $"[{Rows(c)}]"))}]]";
        string body = $"{{\"id\":\"x\",\"inputs\":[{{\"data\":{nested},\"name\":\"input\",\"shape\":[1,3,32,32],\"datatype\":\"FP32\"}}],\"outputs\":[{{\"name\":\"logits\"}}]}}";
        var response = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var expected = await V2.Output(await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(Image()), Cancel), "logits");
        Assert.Equal(expected, await V2.Output(response, "logits"));
    }

    /// <summary>
    /// Fuzzing: random bytes, truncations and byte flips of a valid request, and structural mutations.
    /// Every answer must be a well-formed 200 or 4xx in the protocol's error format, and the server healthy after.
    /// </summary>
    [Fact]
    public async Task Random_and_mutated_bodies_get_well_formed_answers_and_the_server_stays_healthy()
    {
        var random = new Random(12345);
        byte[] valid = Encoding.UTF8.GetBytes(V2.Request("input", [1, 3, 32, 32], models.Images(1, 4)));
        var bodies = new List<byte[]>();
        for (int i = 0; i < 150; i++)
        {
            var bytes = new byte[random.Next(0, 2000)];
            random.NextBytes(bytes);
            bodies.Add(bytes);
        }
        for (int i = 0; i < 150; i++) bodies.Add(valid[..random.Next(0, valid.Length)]);
        for (int i = 0; i < 200; i++)
        {
            var flipped = (byte[])valid.Clone();
            for (int f = 0; f < 1 + random.Next(4); f++) flipped[random.Next(80)] = (byte)random.Next(256); // the header part
            bodies.Add(flipped);
        }
        string[] fragments = ["null", "true", "[]", "{}", "-1", "1e308", "\"FP32\"", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "\"\\u0000\"", "9223372036854775808"];
        string text = Encoding.UTF8.GetString(valid);
        int dataAt = text.IndexOf("\"data\"", StringComparison.Ordinal);
        string head = text[..dataAt];
        foreach (var fragment in fragments)
            foreach (var key in new[] { "\"name\":", "\"shape\":", "\"datatype\":", "\"inputs\":", "\"id\":" })
            {
                int at = head.IndexOf(key, StringComparison.Ordinal);
                if (at < 0) at = 0;
                bodies.Add(Encoding.UTF8.GetBytes(text[..(at + key.Length)] + fragment + "," + text[(at + key.Length)..]));
            }

        foreach (var chunk in bodies.Chunk(16))
        {
            var responses = await Task.WhenAll(chunk.Select(b =>
                server.Client.PostAsync("/v2/models/classify/infer", new ByteArrayContent(b), Cancel)));
            foreach (var response in responses)
            {
                int status = (int)response.StatusCode;
                Assert.True(status == 200 || status is >= 400 and < 500, $"status {status}");
                if (status != 200) Assert.False(string.IsNullOrWhiteSpace(await V2.Error(response)));
            }
        }
        Assert.True(bodies.Count > 500);
        Assert.Equal(HttpStatusCode.OK, (await server.Client.GetAsync("/v2/health/ready", Cancel)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await server.Client.PostAsync("/v2/models/classify/infer", new ByteArrayContent(valid), Cancel)).StatusCode);
        Assert.Equal(0, await server.Metric("adaptive_model_requests_total{model=\"classify\",variant=\"resnet18\",outcome=\"error\"}"));
        Assert.Equal(0, await server.Metric("adaptive_model_inflight_requests{model=\"classify\",variant=\"resnet18\"}"));
    }
}
