using System.Net;
using System.Text.Json;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The REST side as the Open Inference Protocol's spec has it: the versioned paths its OpenAPI file
/// defines, errors as <c>{"error": ...}</c> for every refusal (unrouted paths and methods included), HEAD
/// on the health endpoints, the extensions and platform it names, and strict parsing of request bodies.
/// </summary>
[Collection("serving")]
public sealed class RestConformanceTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;
    const string Outcomes = "adaptive_model_requests_total{{model=\"classify\",variant=\"resnet18\",outcome=\"{0}\"}}";

    static long[] ImageShape(int rows) => [rows, 3, TestModels.Resolution, TestModels.Resolution];

    [Fact]
    public async Task Versioned_paths_serve_version_1_and_refuse_others()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        string body = V2.Request("input", ImageShape(1), models.Images(1, seed: 1));

        var metadata = JsonDocument.Parse(await server.Client.GetStringAsync("/v2/models/classify/versions/1", Cancel)).RootElement;
        Assert.Equal("onnx_onnxv1", metadata.GetProperty("platform").GetString());
        Assert.Equal(["1"], metadata.GetProperty("versions").EnumerateArray().Select(v => v.GetString()));
        Assert.Equal(HttpStatusCode.OK, (await server.Client.GetAsync("/v2/models/classify/versions/1/ready", Cancel)).StatusCode);
        var answer = await server.Client.PostAsync("/v2/models/classify/versions/1/infer", V2.Json(body), Cancel);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal(1000, (await V2.Output(answer, "logits")).Length);

        foreach (var response in new[]
                 {
                     await server.Client.GetAsync("/v2/models/classify/versions/2", Cancel),
                     await server.Client.GetAsync("/v2/models/classify/versions/2/ready", Cancel),
                     await server.Client.PostAsync("/v2/models/classify/versions/2/infer", V2.Json(body), Cancel),
                 })
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Contains("unknown version '2'", await V2.Error(response));
        }
        Assert.Equal(1, await server.Metric(string.Format(Outcomes, "not_found")));
        Assert.Equal(1, await server.Metric(string.Format(Outcomes, "success")));
    }

    [Fact]
    public async Task Unrouted_paths_and_methods_answer_with_a_protocol_error()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));

        var missing = await server.Client.GetAsync("/v2/nothing/here", Cancel);
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("/v2/nothing/here", await V2.Error(missing));

        var method = await server.Client.DeleteAsync("/v2/models/classify", Cancel);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, method.StatusCode);
        Assert.Contains("DELETE", await V2.Error(method));

        var get = await server.Client.GetAsync("/v2/models/classify/infer", Cancel);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
        Assert.Contains("GET is not allowed", await V2.Error(get));
    }

    [Fact]
    public async Task Health_answers_head_and_server_metadata_lists_the_binary_extension()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));

        foreach (string path in new[] { "/v2/health/live", "/v2/health/ready" })
        {
            using var head = new HttpRequestMessage(HttpMethod.Head, path);
            Assert.Equal(HttpStatusCode.OK, (await server.Client.SendAsync(head, Cancel)).StatusCode);
        }
        foreach (string path in new[] { "/v2", "/v2/" })
        {
            var metadata = JsonDocument.Parse(await server.Client.GetStringAsync(path, Cancel)).RootElement;
            Assert.Equal("adaptive-server", metadata.GetProperty("name").GetString());
            Assert.Equal(["binary_tensor_data"], metadata.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));
        }
    }

    public static TheoryData<string, string, string> Malformed()
    {
        string image = string.Join(",", Enumerable.Repeat("0.5", 3 * TestModels.Resolution * TestModels.Resolution));
        string input = $"{{\"name\":\"input\",\"datatype\":\"FP32\",\"shape\":[1,3,{TestModels.Resolution},{TestModels.Resolution}],\"data\":[{image}]}}";
        return new()
        {
            { "trailing text after the request", $"{{\"inputs\":[{input}]}} x", "malformed JSON" },
            { "a second JSON value after the request", $"{{\"inputs\":[{input}]}} {{}}", "malformed JSON" },
            { "a key given twice in the request", $"{{\"id\":\"a\",\"id\":\"b\",\"inputs\":[{input}]}}", "'id' is given more than once" },
            { "a key given twice in an input", $"{{\"inputs\":[{input.Replace("\"datatype\":\"FP32\"", "\"datatype\":\"FP32\",\"datatype\":\"FP32\"")}]}}", "datatype is given more than once" },
            { "a number where data's array should be", $"{{\"inputs\":[{input.Replace($"[{image}]", "0.5")}]}}", "data must be an array" },
            { "ragged nested data", $"{{\"inputs\":[{input.Replace($"[{image}]", $"[[{image[..^4]}],[0.5]]")}]}}", "nested" },
            { "an output asked for twice", $"{{\"inputs\":[{input}],\"outputs\":[{{\"name\":\"logits\"}},{{\"name\":\"logits\"}}]}}", "output 'logits' is requested more than once" },
        };
    }

    /// <summary>What a lenient parser would take with a guess is a 400 naming what is wrong, counted as bad_request.</summary>
    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task Malformed_bodies_are_refused(string what, string body, string message)
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));

        var response = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(body), Cancel);

        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{what}: {response.StatusCode} {await response.Content.ReadAsStringAsync(Cancel)}");
        Assert.Contains(message, await V2.Error(response));
        Assert.Equal(1, await server.Metric(string.Format(Outcomes, "bad_request")));
    }

    [Fact]
    public async Task A_body_over_the_limit_counts_as_too_large()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, http: RunningServer.Http(maxBodyBytes: 16 * 1024)));

        var response = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(V2.Request("input", ImageShape(2), models.Images(2, seed: 1))), Cancel);

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal(1, await server.Metric(string.Format(Outcomes, "too_large")));
        Assert.Equal(0, await server.Metric(string.Format(Outcomes, "bad_request")));
    }
}
