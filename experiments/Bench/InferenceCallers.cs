using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Adaptive.ModelServer.Grpc.V2;
using Google.Protobuf;
using Grpc.Core;

namespace Adaptive.Experiments.Bench;

/// <summary>One request as one transport sends it, and the same request refused (an output the model lacks).</summary>
public interface IInferenceCaller
{
    /// <summary>The transport and encoding: json, binary (REST), grpc.</summary>
    string Encoding { get; }
    /// <summary>The HTTP version the transport runs on: 1.1 for REST, 2 for gRPC.</summary>
    Version Protocol { get; }
    int RequestBytes { get; }

    /// <summary>
    /// One request: its latency; that latency less the ONNX Runtime call that served it, which the server reports
    /// in Server-Timing (<c>infer;dur=</c>, milliseconds), null on a refusal; and the size of the answer.
    /// </summary>
    /// <param name="refused">Send the same request naming an output the model lacks: the server reads and parses it
    /// (the output is named after the inputs), then refuses it without inference, so its latency is the exchange
    /// and parsing alone.</param>
    Task<(double Latency, double? Overhead, int AnswerBytes)> Send(bool refused);
}

/// <summary>Callers of a model server's inference endpoint, one per transport and encoding; shared by <c>bench server</c> and the profiler.</summary>
public static class InferenceCallers
{
    /// <summary>
    /// One row of input per transport: over REST as JSON numbers, and as raw bytes after a JSON header (outputs
    /// binary too); over gRPC in raw_input_contents. Each request is serialised once, ahead of the calls, on
    /// both transports: what a caller costs to build its message is not the server's.
    /// </summary>
    public static IEnumerable<IInferenceCaller> For(HttpClient client, CallInvoker grpc, string model, IReadOnlyCollection<string> transports)
    {
        using var metadata = JsonDocument.Parse(client.GetStringAsync($"/v2/models/{model}").GetAwaiter().GetResult());
        var input = metadata.RootElement.GetProperty("inputs")[0];
        long[] shape = [1, .. input.GetProperty("shape").EnumerateArray().Skip(1).Select(d => d.GetInt64())];
        var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) data[i] = i % 255 / 255f;
        string name = input.GetProperty("name").GetString()!;
        string output = metadata.RootElement.GetProperty("outputs")[0].GetProperty("name").GetString()!;
        // The refused name has the same length, so the refused request has the same size.
        string refused = new('x', output.Length);
        if (transports.Contains("rest"))
        {
            yield return new RestCaller(client, model, "json", V2Requests.Json(name, shape, data, output), null, V2Requests.Json(name, shape, data, refused));
            yield return new RestCaller(client, model, "binary", V2Requests.Binary(name, shape, data, output), V2Requests.BinaryHeader(name, shape, data, output).Length,
                V2Requests.Binary(name, shape, data, refused));
        }
        if (transports.Contains("grpc"))
        {
            byte[] Request(string outputName)
            {
                var request = new ModelInferRequest { ModelName = model, Outputs = { new ModelInferRequest.Types.InferRequestedOutputTensor { Name = outputName } } };
                request.Inputs.Add(new ModelInferRequest.Types.InferInputTensor { Name = name, Datatype = "FP32", Shape = { shape } });
                request.RawInputContents.Add(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.AsSpan())));
                return request.ToByteArray();
            }
            yield return new GrpcCaller(grpc, Request(output), Request(refused));
        }
    }

    /// <summary>A REST body; <paramref name="HeaderLength"/> is set for the binary tensor data extension.</summary>
    sealed record RestCaller(HttpClient Client, string Model, string Encoding, byte[] Bytes, int? HeaderLength, byte[] Refused) : IInferenceCaller
    {
        public Version Protocol => HttpVersion.Version11;
        public int RequestBytes => Bytes.Length;

        public async Task<(double Latency, double? Overhead, int AnswerBytes)> Send(bool refused)
        {
            long started = Stopwatch.GetTimestamp();
            using var content = new ByteArrayContent(refused ? Refused : Bytes);
            content.Headers.ContentType = new(HeaderLength is null ? "application/json" : "application/octet-stream");
            if (HeaderLength is { } length) content.Headers.Add("Inference-Header-Content-Length", length.ToString(CultureInfo.InvariantCulture));
            using var response = await Client.PostAsync($"/v2/models/{Model}/infer", content);
            var answer = await response.Content.ReadAsByteArrayAsync();
            double latency = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var expected = refused ? HttpStatusCode.BadRequest : HttpStatusCode.OK;
            if (response.StatusCode != expected) throw new InvalidOperationException($"the server answered {(int)response.StatusCode}, expected {(int)expected}");
            return (latency, latency - InferenceMs(response.Headers.TryGetValues("Server-Timing", out var values) ? values : []), answer.Length);
        }
    }

    /// <summary>ModelInfer with a request serialised ahead of time: its bytes go out as they are.</summary>
    sealed record GrpcCaller(CallInvoker Invoker, byte[] Request, byte[] Refused) : IInferenceCaller
    {
        static readonly Method<byte[], ModelInferResponse> ModelInfer = new(MethodType.Unary, GRPCInferenceService.Descriptor.FullName, "ModelInfer",
            Marshallers.Create<byte[]>((bytes, context) => context.Complete(bytes), context => context.PayloadAsNewBuffer()),
            Marshallers.Create<ModelInferResponse>((response, context) => context.Complete(response.ToByteArray()),
                context => ModelInferResponse.Parser.ParseFrom(context.PayloadAsReadOnlySequence())));

        public string Encoding => "grpc";
        public Version Protocol => HttpVersion.Version20;
        public int RequestBytes => Request.Length;

        public async Task<(double Latency, double? Overhead, int AnswerBytes)> Send(bool refused)
        {
            long started = Stopwatch.GetTimestamp();
            using var call = Invoker.AsyncUnaryCall(ModelInfer, null, new CallOptions(), refused ? Refused : Request);
            try
            {
                var answer = await call.ResponseAsync;
                double latency = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                if (refused) throw new InvalidOperationException("the server answered a request it should refuse");
                var timing = (await call.ResponseHeadersAsync).GetValue("server-timing");
                return (latency, latency - InferenceMs(timing is null ? [] : [timing]), answer.CalculateSize());
            }
            catch (RpcException e) when (refused && e.StatusCode == StatusCode.InvalidArgument)
            {
                return (Stopwatch.GetElapsedTime(started).TotalMilliseconds, null, 0);
            }
        }
    }

    /// <summary>The <c>infer;dur=</c> of a Server-Timing value (milliseconds), null when absent.</summary>
    static double? InferenceMs(IEnumerable<string> serverTiming)
    {
        const string Metric = "infer;dur=";
        var entry = serverTiming.SelectMany(v => v.Split(',')).Select(e => e.Trim()).FirstOrDefault(e => e.StartsWith(Metric, StringComparison.Ordinal));
        return entry is null ? null : double.Parse(entry[Metric.Length..], CultureInfo.InvariantCulture);
    }
}
