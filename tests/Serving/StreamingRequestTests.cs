using System.Buffers;
using System.Net;
using System.Text;
using System.Text.Json;
using Adaptive.ModelServer.Protocol;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// JSON inference requests are read as their bodies arrive: cut anywhere, in pieces of any size and of many
/// segments, a body reads exactly as it does whole; and a body whose head is wrong is refused before the rest
/// of it is sent.
/// </summary>
[Collection("serving")]
public sealed class StreamingRequestTests(TestModels models) : IDisposable
{
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-streaming-").FullName;

    public void Dispose() => Directory.Delete(directory, recursive: true);

    static readonly CancellationToken Cancel = TestContext.Current.CancellationToken;

    static readonly InputContract Contract = new(
    [
        new TensorSpec("image", TensorDataType.Fp32, [-1, 2, 3]),
        new TensorSpec("ids", TensorDataType.Int64, [-1]),
        new TensorSpec("text", TensorDataType.Bytes, [-1]),
    ], maxRows: 4);

    /// <summary>
    /// Data after its shape (read as it streams), data before it (kept until the shape is known), nested data,
    /// escaped strings, and unknown properties that hold objects with a "data" key of their own.
    /// </summary>
    const string Body = """
        { "id": "r-1", "extra": {"data": [1, {"x": "}"}], "inputs": []},
          "inputs": [
            {"name": "image", "shape": [2, 2, 3], "datatype": "FP32", "note": [[["]"]]],
             "data": [[[1.5, -2, 3e2], [0.25, 5, 6]], [[7, 8, 9], [10, 11, -1.25e-3]]]},
            {"data": [9223372036854775807, -9223372036854775808], "parameters": {"shape": [3]}, "datatype": "INT64", "shape": [2], "name": "ids"},
            {"name": "text", "datatype": "BYTES", "shape": [3], "data": ["a\"b\\c", "\u00e9\u4e2d", ""]}
          ],
          "outputs": [{"name": "out", "parameters": {"binary_data": true}}],
          "parameters": {"binary_data_output": false, "other": {"x": [1, 2]}}
        }
        """;

    static InferRequest ReadWhole(string body) => InferRequestReader.Read(Encoding.UTF8.GetBytes(body), 0, new TensorArrayPool(0), Contract).Request;

    /// <summary>Feeds the body as a request pipe would: each piece is what was left unread plus what arrived, in segments of at most <paramref name="segmentBytes"/>.</summary>
    static InferRequest ReadInPieces(byte[] body, IEnumerable<int> cuts, int segmentBytes)
    {
        using var reader = new InferRequestReader(body.Length, 0, new TensorArrayPool(0), Contract);
        byte[] left = [];
        int from = 0;
        foreach (int cut in cuts.Append(body.Length))
        {
            byte[] piece = [.. left, .. body[from..cut]];
            var sequence = Segments(piece, segmentBytes);
            var position = reader.Feed(sequence, isLast: cut == body.Length);
            left = sequence.Slice(position).ToArray();
            from = cut;
        }
        Assert.Empty(left);
        return reader.Finish().Request;
    }

    static ReadOnlySequence<byte> Segments(byte[] bytes, int segmentBytes)
    {
        if (bytes.Length <= segmentBytes) return new ReadOnlySequence<byte>(bytes);
        var first = new Segment(bytes.AsMemory(0, segmentBytes), 0);
        var last = first;
        for (int at = segmentBytes; at < bytes.Length; at += segmentBytes)
            last = last.Append(bytes.AsMemory(at, Math.Min(segmentBytes, bytes.Length - at)));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex) => (Memory, RunningIndex) = (memory, runningIndex);

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }

    /// <summary>A request as text that compares by value: id, each input's name, datatype, shape and elements, requested outputs.</summary>
    static string Describe(InferRequest request) => JsonSerializer.Serialize(new
    {
        request.Id,
        request.BinaryDataOutput,
        Inputs = request.Inputs.Select(i => new
        {
            i.Name, DataType = i.DataType.ToString(), i.Shape,
            Data = i.Data is byte[][] strings ? strings.Select(Encoding.UTF8.GetString).Cast<object>().ToArray() : i.Data.Cast<object>().ToArray(),
        }),
        Outputs = request.RequestedOutputs?.Select(o => new { o.Name, o.Binary }),
    });

    [Fact]
    public void A_body_cut_anywhere_reads_as_it_does_whole()
    {
        var whole = ReadWhole(Body);
        Assert.Equal("r-1", whole.Id);
        Assert.Equal([1.5f, -2, 300, 0.25f, 5, 6, 7, 8, 9, 10, 11, -0.00125f], (float[])whole.Inputs[0].Data);
        Assert.Equal([long.MaxValue, long.MinValue], (long[])whole.Inputs[1].Data);
        Assert.Equal(["a\"b\\c", "é中", ""], ((byte[][])whole.Inputs[2].Data).Select(Encoding.UTF8.GetString));
        Assert.Equal("out", Assert.Single(whole.RequestedOutputs!).Name);
        string expected = Describe(whole);

        byte[] body = Encoding.UTF8.GetBytes(Body);
        for (int cut = 1; cut < body.Length; cut++)
            Assert.Equal(expected, Describe(ReadInPieces(body, [cut], segmentBytes: 7)));
        foreach (int step in new[] { 1, 2, 3, 5, 64 })
            Assert.Equal(expected, Describe(ReadInPieces(body, Enumerable.Range(1, (body.Length - 1) / step).Select(i => i * step), segmentBytes: 1 + step % 4)));
    }

    [Fact]
    public void A_body_cut_anywhere_is_refused_with_the_same_message_as_whole()
    {
        string[] wrong =
        [
            Body.Replace("\"FP32\"", "\"INT32\""),
            Body.Replace("[10, 11, -1.25e-3]", "[10, 11]"),
            Body.Replace("-9223372036854775808", "\"x\""),
            Body.Replace("\"parameters\": {\"shape\": [3]}", "\"parameters\": {\"binary_data_size\": 16}"),
            Body + " trailing",
            Body[..^20],
        ];
        foreach (string text in wrong)
        {
            string expected = Assert.Throws<ProtocolException>(() => ReadWhole(text)).Message;
            byte[] body = Encoding.UTF8.GetBytes(text);
            for (int cut = 1; cut < body.Length; cut += 3)
            {
                var refused = Assert.Throws<ProtocolException>(() => ReadInPieces(body, [cut], segmentBytes: 5));
                Assert.Equal(ErrorKind.InvalidArgument, refused.Kind);
                // A JSON error names where it was found, which depends on where the pieces were cut; all else is the same.
                if (expected.StartsWith("malformed JSON", StringComparison.Ordinal)) Assert.StartsWith("malformed JSON", refused.Message);
                else Assert.Equal(expected, refused.Message);
            }
        }
    }

    /// <summary>
    /// The head of a 40 MB body with the wrong datatype, and then nothing, to a model whose inputs bound no
    /// body size: the server answers 400 at once (well before the 20 s request deadline), without waiting for
    /// the data it would never use.
    /// </summary>
    [Fact]
    public async Task A_body_whose_head_is_wrong_is_refused_before_the_rest_is_sent()
    {
        string model = IdentityModels.Write(directory, "identity.onnx", IdentityModels.Float, "batch", "length");
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(model, name: "identity", maxBatch: 4,
            http: RunningServer.Http(requestTimeoutMs: 20_000, maxBodyBytes: 64L << 20)));
        string head = "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP64\",\"shape\":[1,5000000],\"data\":[1,2,3,";
        var started = System.Diagnostics.Stopwatch.StartNew();
        string answer = await RawHttp.Exchange(server.Address, Encoding.ASCII.GetBytes(
            $"POST /v2/models/identity/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {40 << 20}\r\n\r\n{head}"), TimeSpan.FromSeconds(15));
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"answered after {started.Elapsed}");
        Assert.StartsWith("HTTP/1.1 400", answer);
        Assert.Contains("Connection: close", answer);
        Assert.True(answer.Contains("has datatype FP64, the model expects FP32", StringComparison.Ordinal), answer);
    }

    /// <summary>
    /// One JSON token longer than the reader holds (a 2 MB string, sent whole) cannot stall the request pipe
    /// until the deadline: it is a 400 naming the limit, at once.
    /// </summary>
    [Fact]
    public async Task A_JSON_token_longer_than_the_limit_is_refused_at_once()
    {
        string model = IdentityModels.Write(directory, "identity.onnx", IdentityModels.Float, "batch", "length");
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(model, name: "identity", maxBatch: 4,
            http: RunningServer.Http(requestTimeoutMs: 20_000, maxBodyBytes: 64L << 20)));
        string body = $"{{\"note\":\"{new string('x', 2 << 20)}\",\"inputs\":[{{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[1,2]}}]}}";
        var started = System.Diagnostics.Stopwatch.StartNew();
        var response = await server.Client.PostAsync("/v2/models/identity/infer", V2.Json(body), Cancel);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"answered after {started.Elapsed}");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains($"longer than {InferRequestReader.MaxTokenBytes} bytes", await V2.Error(response));
        // And the server carries on.
        var fine = await server.Client.PostAsync("/v2/models/identity/infer",
            V2.Json("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[1,2],\"data\":[1,2]}]}"), Cancel);
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }

    [Fact]
    public async Task A_JSON_body_trickled_in_small_chunks_is_served()
    {
        await using var server = await RunningServer.StartModel(RunningServer.ModelOptions(models.ResNet18, maxBatch: 4));
        byte[] body = Encoding.UTF8.GetBytes(V2.Request("input", [1, 3, 32, 32], models.Images(1, 0)));
        var whole = await server.Client.PostAsync("/v2/models/classify/infer", V2.Json(Encoding.UTF8.GetString(body)), Cancel);
        var trickled = await server.Client.PostAsync("/v2/models/classify/infer",
            new StreamContent(new TrickleStream(body, chunk: 97)) { Headers = { ContentType = new("application/json") } }, Cancel);
        Assert.Equal(HttpStatusCode.OK, trickled.StatusCode);
        Assert.Equal(await V2.Output(whole, "logits"), await V2.Output(trickled, "logits"));
    }

    /// <summary>A body that gives at most <paramref name="chunk"/> bytes per read, so that it goes out in many small chunks.</summary>
    sealed class TrickleStream(byte[] body, int chunk) : MemoryStream(body)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => base.Read(buffer, offset, Math.Min(count, chunk));
    }
}
