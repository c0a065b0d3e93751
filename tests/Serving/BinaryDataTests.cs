using Adaptive.Core.Routing;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Adaptive.ModelServer.Routing;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>The binary tensor data extension: raw bytes after a JSON header, in requests and responses, through the router too.</summary>
[Collection("serving")]
public sealed class BinaryDataTests(TestModels models)
{
    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    float[] Image => models.Images(1, 21);
    static string Header(long bytes, string extra = "") =>
        $"{{\"inputs\":[{{\"name\":\"input\",\"shape\":[1,3,32,32],\"datatype\":\"FP32\",\"parameters\":{{\"binary_data_size\":{bytes}}}}}]{extra}}}";

    /// <summary>Splits a binary response into its JSON header and the float outputs after it.</summary>
    static async Task<(JsonElement Header, float[] Data)> ReadBinary(HttpResponseMessage response)
    {
        byte[] body = await response.Content.ReadAsByteArrayAsync(Cancel);
        int headerLength = int.Parse(response.Headers.GetValues("Inference-Header-Content-Length").Single(), System.Globalization.CultureInfo.InvariantCulture);
        var header = JsonDocument.Parse(body.AsMemory(0, headerLength)).RootElement.Clone();
        return (header, MemoryMarshal.Cast<byte, float>(body.AsSpan(headerLength)).ToArray());
    }

    [Fact]
    public async Task Binary_inputs_and_outputs_give_the_same_answer_as_json()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        var json = await V2.Output(await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(V2.Request("input", [1, 3, 32, 32], Image)), Cancel), "logits");

        var binaryIn = await server.Client.PostAsync("/v2/models/classify/infer", V2.Binary(Header(3072 * 4), MemoryMarshal.AsBytes(Image.AsSpan())), Cancel);
        Assert.Equal(HttpStatusCode.OK, binaryIn.StatusCode);
        Assert.Equal(json, await V2.Output(binaryIn, "logits"));

        var binaryOut = await server.Client.PostAsync("/v2/models/classify/infer",
            V2.Binary(Header(3072 * 4, ",\"parameters\":{\"binary_data_output\":true}"), MemoryMarshal.AsBytes(Image.AsSpan())), Cancel);
        Assert.Equal(HttpStatusCode.OK, binaryOut.StatusCode);
        var (header, data) = await ReadBinary(binaryOut);
        Assert.Equal(4000, header.GetProperty("outputs")[0].GetProperty("parameters").GetProperty("binary_data_size").GetInt32());
        Assert.False(header.GetProperty("outputs")[0].TryGetProperty("data", out _));
        Assert.Equal(json, data);
    }

    [Theory]
    [InlineData(100, 12288, "binary_data_size is 100 bytes, shape [1,3,32,32] of FP32 needs 12288")]
    [InlineData(12288, 6144, "binary_data_size is 12288 bytes, but only 6144 bytes of binary data are left")]
    public async Task Binary_sizes_that_do_not_match_are_refused(long claimed, int sent, string message)
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        var response = await server.Client.PostAsync("/v2/models/classify/infer", V2.Binary(Header(claimed), MemoryMarshal.AsBytes(Image.AsSpan())[..sent]), Cancel);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(message, await V2.Error(response));

        var extra = await server.Client.PostAsync("/v2/models/classify/infer", V2.Binary(Header(12288), [.. MemoryMarshal.AsBytes(Image.AsSpan()), 1, 2]), Cancel);
        Assert.Equal("2 bytes of binary data follow the header that no input's binary_data_size claims", await V2.Error(extra));

        var content = V2.Binary(Header(12288), MemoryMarshal.AsBytes(Image.AsSpan()));
        content.Headers.Remove("Inference-Header-Content-Length");
        content.Headers.Add("Inference-Header-Content-Length", "999999");
        var beyond = await server.Client.PostAsync("/v2/models/classify/infer", content, Cancel);
        Assert.Contains("Inference-Header-Content-Length is 999999, but the body has", await V2.Error(beyond));
    }

    /// <summary>
    /// A chunked body announces no length: the server reads the header, then the binary data into the
    /// input as it streams, and finds a short or long body only at its end.
    /// </summary>
    [Fact]
    public async Task Binary_data_in_a_chunked_body_is_read_as_it_streams()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        var json = await V2.Output(await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(V2.Request("input", [1, 3, 32, 32], Image)), Cancel), "logits");
        byte[] image = MemoryMarshal.AsBytes(Image.AsSpan()).ToArray();

        async Task<HttpResponseMessage> Chunked(byte[] data)
        {
            byte[] header = Encoding.UTF8.GetBytes(Header(3072 * 4));
            var content = new StreamContent(new UnseekableStream([.. header, .. data]));
            content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var response = await server.Client.PostAsync("/v2/models/classify/infer", content, Cancel);
            Assert.Null(content.Headers.ContentLength); // so HttpClient sent it chunked
            return response;
        }

        var whole = await Chunked(image);
        Assert.Equal(HttpStatusCode.OK, whole.StatusCode);
        Assert.Equal(json, await V2.Output(whole, "logits"));
        Assert.Equal("input 'input': binary_data_size is 12288 bytes, but only 6144 bytes of binary data are left", await V2.Error(await Chunked(image[..6144])));
        Assert.Equal("3 bytes of binary data follow the header that no input's binary_data_size claims", await V2.Error(await Chunked([.. image, 1, 2, 3])));
    }

    [Fact]
    public async Task The_router_carries_binary_data_through_chained_stages()
    {
        await using var classify = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18));
        await using var head = await RunningServer.StartModel(RunningServer.ModelOptions(models.Head, name: "head", variant: "linear"));
        string config = Path.Combine(Directory.CreateTempSubdirectory("adaptive-router-").FullName, "routes.json");
        File.WriteAllText(config, new RouterConfig("two-stage", [
            new StageRoute("classify", [new VariantRoute("resnet18", classify.Address.ToString(), 1)]),
            new StageRoute("head", [new VariantRoute("linear", head.Address.ToString(), 1)])]).Write());
        await using var router = await RunningServer.StartRouter(new RouterOptions(RunningServer.Http(), config, TimeSpan.FromSeconds(1), 16));

        var json = await V2.Output(await router.Client.PostAsync("/v2/models/two-stage/infer", V2.Json(V2.Request("input", [1, 3, 32, 32], Image)), Cancel), "probabilities");
        var binary = await router.Client.PostAsync("/v2/models/two-stage/infer",
            V2.Binary(Header(3072 * 4, ",\"parameters\":{\"binary_data_output\":true}"), MemoryMarshal.AsBytes(Image.AsSpan())), Cancel);
        Assert.Equal(HttpStatusCode.OK, binary.StatusCode);
        var (header, data) = await ReadBinary(binary);
        Assert.Equal("probabilities", header.GetProperty("outputs")[0].GetProperty("name").GetString());
        Assert.Equal(json, data);
        Directory.Delete(Path.GetDirectoryName(config)!, recursive: true);
    }

    /// <summary>A stream HttpClient cannot take the length of, so it sends the body chunked.</summary>
    sealed class UnseekableStream(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }
}
