using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Scheduling;

namespace Adaptive.ModelServer.Serving;

/// <summary>
/// What the server does with a request once a front end has read it, whatever carried it (as Triton's core
/// does for its HTTP and gRPC front ends): the model name and version check, validation against the model,
/// the batcher within the time the request has left, and the outputs it asked for. Refusals are
/// <see cref="ProtocolException"/> (with an <see cref="ErrorKind"/>) or <see cref="RequestRejectedException"/>;
/// each front end maps them to its own status codes and counts the request's <see cref="Outcome"/>.
/// </summary>
public sealed class InferenceService(ModelServerOptions options, OnnxModel model, BatchingOptions batching, DynamicBatcher batcher, TensorArrayPool arrays, ModelMetrics metrics)
{
    /// <summary>The protocol's platform name for an ONNX model run by ONNX Runtime.</summary>
    public const string Platform = "onnx_onnxv1";
    /// <summary>The one version of the model a server serves.</summary>
    public const string Version = "1";

    public string ModelName => options.ModelName;
    public IReadOnlyList<TensorSpec> Inputs => model.Inputs;
    public IReadOnlyList<TensorSpec> Outputs => model.Outputs;
    public InputContract Contract { get; } = new(model.Inputs, batching.MaxBatchSize);
    public TensorArrayPool Arrays => arrays;
    /// <summary>The bytes of requests being read at once, over both transports.</summary>
    public BodyBudget Bodies { get; } = new(options.BodyBudgetBytes);
    public ModelMetrics Metrics => metrics;
    /// <summary>The deadline of every request from its arrival; a caller may ask for less.</summary>
    public TimeSpan RequestTimeout => options.Http.RequestTimeout;

    /// <summary>Throws <see cref="ErrorKind.NotFound"/> unless <paramref name="name"/> (and <paramref name="version"/>, when given) is what this server serves.</summary>
    public void CheckModel(string name, string? version)
    {
        if (name != options.ModelName)
            throw new ProtocolException(ErrorKind.NotFound, $"unknown model '{name}'; this server serves '{options.ModelName}'");
        if (!string.IsNullOrEmpty(version) && version != Version)
            throw new ProtocolException(ErrorKind.NotFound, $"unknown version '{version}' of model '{name}'; it has version '{Version}'");
    }

    /// <summary>
    /// Runs a request whose arrays came from <see cref="Arrays"/> (they go back to it here, once the batcher is
    /// done with them), with <paramref name="timeLeft"/> for its queueing and inference.
    /// </summary>
    public async Task<InferResult> InferAsync(InferRequest request, TimeSpan timeLeft)
    {
        BatchResult result;
        try
        {
            model.Validate(request);
            result = await batcher.Submit(request, timeLeft > TimeSpan.Zero ? timeLeft : TimeSpan.Zero);
        }
        finally
        {
            // Only once Submit's task has ended: until then the batcher may read the request's arrays.
            arrays.Return(request);
        }
        return new InferResult(Selected(request, result.Outputs), result.QueueWait, result.Inference);
    }

    /// <summary>The outputs the request asked for (all when it named none), each with whether it goes as binary data.</summary>
    static List<(Tensor Tensor, bool Binary)> Selected(InferRequest request, IReadOnlyList<Tensor> outputs) =>
        request.RequestedOutputs is { } wanted
            ? [.. wanted.Select(w => (outputs.First(o => o.Name == w.Name), w.Binary ?? request.BinaryDataOutput))]
            : [.. outputs.Select(o => (o, request.BinaryDataOutput))];

    /// <summary>
    /// The W3C Server-Timing value (milliseconds): the request's wait in the batching queue and the ONNX
    /// Runtime call that ran its batch, so that a client or a benchmark can tell the model's time from the server's.
    /// </summary>
    public static string ServerTiming(InferResult result) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"queue;dur={result.QueueWait.TotalMilliseconds:F3}, infer;dur={result.Inference.TotalMilliseconds:F3}");
}

/// <summary>The outputs of one request, each with whether it goes as binary data, and where its time went.</summary>
public sealed record InferResult(IReadOnlyList<(Tensor Tensor, bool Binary)> Outputs, TimeSpan QueueWait, TimeSpan Inference);
