using System.Buffers;
using System.Diagnostics;
using System.Text.Json;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Scheduling;
using Microsoft.AspNetCore.Connections;
using Prometheus;

namespace Adaptive.ModelServer.Serving;

/// <param name="ModelName">The name clients call (<c>/v2/models/{name}</c>): the pipeline's stage.</param>
/// <param name="Variant">Which variant of the stage this is, for the metrics' <c>variant</c> label.</param>
/// <param name="BodyBudgetBytes">The most bytes of request bodies read at once, over all requests; beyond it requests get 429.</param>
public sealed record ModelServerOptions(HttpOptions Http, string ModelPath, string ModelName, string Variant, BatchingOptions Batching, RuntimeOptions Runtime,
    long BodyBudgetBytes = ModelServerOptions.DefaultBodyBudgetBytes)
{
    public const long DefaultBodyBudgetBytes = 256L << 20;
}

/// <summary>
/// <c>adaptive-server serve</c>: one model variant behind the Open Inference Protocol's REST endpoints,
/// with a dynamic batcher between the HTTP requests and ONNX Runtime.
/// </summary>
public static class ModelServerApp
{
    const string Platform = "onnxruntime_onnx";
    /// <summary>What the request tensors' pool keeps for reuse: about a hundred 224×224 images.</summary>
    const long RetainedTensorBytes = 64L << 20;

    /// <summary>Loads the model and builds the web application; the caller runs it.</summary>
    /// <param name="loaded">The model of <c>options.ModelPath</c> already loaded, which the caller keeps and disposes
    /// (the benchmark measures raw <c>InferenceSession.Run</c> on the very session the server serves from); null loads it here.</param>
    public static WebApplication Build(ModelServerOptions options, OnnxModel? loaded = null)
    {
        var builder = HttpHosting.CreateBuilder(options.Http);
        builder.Services.AddSingleton(new TensorArrayPool(RetainedTensorBytes));
        var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Adaptive.ModelServer");

        var model = loaded ?? OnnxModel.Load(options.ModelPath, options.Runtime, warning => log.LogWarning("{Warning}", warning));
        var batching = model.SupportsBatching ? options.Batching : options.Batching with { MaxBatchSize = 1 };
        if (!model.SupportsBatching && options.Batching.MaxBatchSize > 1)
            log.LogWarning("{Model} has a fixed first dimension, so requests cannot be stacked: max batch size 1", options.ModelPath);
        log.LogInformation("Loaded {Model} as '{Name}' (variant {Variant}) on {Provider} in {LoadMs:F0} ms; {IntraOpThreads} intra-op threads{Pinning}, max batch {MaxBatch}, max queue delay {DelayMs} ms",
            options.ModelPath, options.ModelName, options.Variant, model.ExecutionProvider, model.LoadTime.TotalMilliseconds,
            options.Runtime.EffectiveIntraOpThreads, model.Pinning is { } pinned ? $" (pinned: the caller on CPU {pinned.CallerCpu}, workers on [{string.Join(", ", pinned.WorkerCpus)}])" : "",
            batching.MaxBatchSize, batching.MaxQueueDelay.TotalMilliseconds);

        var registry = Prometheus.Metrics.NewCustomRegistry();
        // process_* (CPU, memory, threads, handles) and the GC's counts and heap: a blow-up shows in Prometheus.
        Prometheus.DotNetStats.Register(registry);
        var metrics = new ModelMetrics(registry, options.ModelName, options.Variant);
        metrics.LoadDuration.Set(model.LoadTime.TotalSeconds);
        var batcher = new DynamicBatcher(new OnnxBackend(model), batching, metrics);
        // After Kestrel has finished the requests in flight: the batcher has nothing left to run.
        app.Lifetime.ApplicationStopped.Register(() =>
        {
            batcher.Dispose();
            if (loaded is null) model.Dispose();
        });

        HttpHosting.MapHealth(app, () => true);
        app.MapMetrics("/metrics", registry);
        var endpoints = new ModelEndpoints(options, model, batching, batcher, app.Services.GetRequiredService<TensorArrayPool>(), metrics, log);
        app.MapGet("/v2", () => Results.Json(new { name = "adaptive-server", version = "1", extensions = Array.Empty<string>() }));
        app.MapGet("/v2/models/{name}", endpoints.Metadata);
        app.MapGet("/v2/models/{name}/ready", endpoints.ModelReady);
        app.MapPost("/v2/models/{name}/infer", endpoints.Infer);
        return app;
    }

    sealed class OnnxBackend(OnnxModel model) : IBatchBackend
    {
        public IReadOnlyList<IReadOnlyList<Tensor>> Run(IReadOnlyList<InferRequest> batch) => model.Run(batch);
    }

    sealed class ModelEndpoints(ModelServerOptions options, OnnxModel model, BatchingOptions batching, DynamicBatcher batcher, TensorArrayPool arrays, ModelMetrics metrics, ILogger log)
    {
        readonly InputContract contract = new(model.Inputs, batching.MaxBatchSize);
        readonly BodyBudget bodies = new(options.BodyBudgetBytes);

        public Task Metadata(HttpContext context, string name)
        {
            if (name != options.ModelName) return UnknownModel(context, name);
            var body = new ArrayBufferWriter<byte>();
            using (var json = new Utf8JsonWriter(body))
            {
                json.WriteStartObject();
                json.WriteString("name", options.ModelName);
                json.WriteStartArray("versions");
                json.WriteStringValue("1");
                json.WriteEndArray();
                json.WriteString("platform", Platform);
                WriteSpecs(json, "inputs", model.Inputs);
                WriteSpecs(json, "outputs", model.Outputs);
                json.WriteEndObject();
            }
            return HttpHosting.WriteJsonAsync(context, body);
        }

        static void WriteSpecs(Utf8JsonWriter json, string property, IEnumerable<TensorSpec> specs)
        {
            json.WriteStartArray(property);
            foreach (var spec in specs)
            {
                json.WriteStartObject();
                json.WriteString("name", spec.Name);
                json.WriteString("datatype", spec.DataType.ToProtocolName());
                InferResponseWriter.WriteShape(json, "shape", spec.Shape);
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }

        public Task ModelReady(HttpContext context, string name, Readiness readiness)
        {
            if (name != options.ModelName) return UnknownModel(context, name);
            bool ready = !readiness.IsDraining;
            context.Response.StatusCode = ready ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
            return context.Response.WriteAsJsonAsync(new { name, ready });
        }

        /// <summary>
        /// The time the request has from its arrival: the server's request timeout, or less when the caller (the router) says so in
        /// <see cref="StageDeadlines.TimeoutHeader"/>. Only the batcher keeps to the shorter time: the body may still take the server's.
        /// </summary>
        TimeSpan TimeoutOf(HttpRequest request)
        {
            if (!request.Headers.TryGetValue(StageDeadlines.TimeoutHeader, out var given)) return options.Http.RequestTimeout;
            if (given.Count != 1 || !double.TryParse(given[0], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double ms)
                || !(ms >= 0) || !double.IsFinite(ms))
                throw new ProtocolException(StatusCodes.Status400BadRequest, $"{StageDeadlines.TimeoutHeader} must be a number of milliseconds, 0 or more; got '{given}'");
            var time = TimeSpan.FromMilliseconds(ms);
            return time < options.Http.RequestTimeout ? time : options.Http.RequestTimeout;
        }

        /// <summary>
        /// One inference request, within its deadline from arrival: reading the body counts (a slow body gets
        /// 408 and cannot hold a slot longer), the batcher gets what is left. Every client error is a 4xx with
        /// <c>{"error": ...}</c>; a client that goes away is counted as such and logged without a stack trace;
        /// 500 is left for ONNX Runtime failing on a valid request.
        /// </summary>
        public async Task Infer(HttpContext context, string name)
        {
            long started = Stopwatch.GetTimestamp();
            metrics.InFlight.Inc();
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            deadline.CancelAfter(options.Http.RequestTimeout);
            bool bodyRead = false;
            try
            {
                if (name != options.ModelName)
                {
                    metrics.Count(Outcome.BadRequest);
                    await UnknownModel(context, name);
                    return;
                }
                var timeout = TimeoutOf(context.Request);
                var request = await HttpHosting.ReadInferRequestAsync(context, arrays, contract, bodies, deadline.Token);
                bodyRead = true;
                BatchResult result;
                try
                {
                    model.Validate(request);
                    var left = timeout - Stopwatch.GetElapsedTime(started);
                    result = await batcher.Submit(request, left > TimeSpan.Zero ? left : TimeSpan.Zero);
                }
                finally
                {
                    // Only once Submit's task has ended: until then the batcher may read the request's arrays.
                    arrays.Return(request);
                }
                context.Response.Headers["Server-Timing"] = ServerTiming(result);
                var response = new ArrayBufferWriter<byte>();
                int? headerLength = InferResponseWriter.WriteResponse(response, options.ModelName, request.Id, Selected(request, result.Outputs));
                await HttpHosting.WriteInferResponseAsync(context, response, headerLength);
                metrics.Count(Outcome.Success);
            }
            catch (Exception e) when (context.RequestAborted.IsCancellationRequested || e is ConnectionResetException || EndedMidBody(e))
            {
                metrics.Count(Outcome.ClientClosed);
                log.LogInformation("A client of {Model} went away before its answer ({Error})", options.ModelName, e.GetType().Name);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !bodyRead)
            {
                metrics.Count(Outcome.BadRequest);
                await HttpHosting.RefuseBodyAsync(context, StatusCodes.Status408RequestTimeout, $"the request body did not arrive within the request's {options.Http.RequestTimeout.TotalMilliseconds:F0} ms deadline");
            }
            catch (BadHttpRequestException e)
            {
                // Kestrel's own refusals while reading the body: malformed chunking, a body too slow or too large.
                metrics.Count(Outcome.BadRequest);
                await HttpHosting.RefuseBodyAsync(context, e.StatusCode, $"bad request body: {e.Message}");
            }
            catch (ProtocolException e)
            {
                metrics.Count(Outcome.BadRequest);
                if (bodyRead) await HttpHosting.WriteErrorAsync(context, e.StatusCode, e.Message);
                else await HttpHosting.RefuseBodyAsync(context, e.StatusCode, e.Message);
            }
            catch (HttpHosting.BodyBudgetException e)
            {
                metrics.Count(Outcome.BodiesFull);
                await HttpHosting.RefuseBodyAsync(context, StatusCodes.Status429TooManyRequests, e.Message, TimeSpan.FromSeconds(1));
            }
            catch (RequestRejectedException e)
            {
                metrics.Count(e.Outcome);
                await HttpHosting.WriteErrorAsync(context, StatusCodes.Status429TooManyRequests, e.Message, e.RetryAfter);
            }
            catch (Exception e)
            {
                metrics.Count(Outcome.Error);
                log.LogError(e, "Inference failed for model {Model}", options.ModelName);
                await HttpHosting.WriteErrorAsync(context, StatusCodes.Status500InternalServerError, $"inference failed: {e.Message}");
            }
            finally
            {
                metrics.InFlight.Dec();
                metrics.RequestDuration.Observe(Stopwatch.GetElapsedTime(started).TotalSeconds);
            }
        }

        /// <summary>The connection ended before the body did: Kestrel says so only in its message (a 400 "Unexpected end of request content").</summary>
        static bool EndedMidBody(Exception e) =>
            e is BadHttpRequestException && e.Message.StartsWith("Unexpected end of request content", StringComparison.Ordinal);

        /// <summary>
        /// The W3C Server-Timing header (milliseconds): the request's wait in the batching queue and the
        /// ONNX Runtime call that ran its batch, so that a client or a benchmark can tell the model's time
        /// from the server's.
        /// </summary>
        static string ServerTiming(BatchResult result) => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"queue;dur={result.QueueWait.TotalMilliseconds:F3}, infer;dur={result.Inference.TotalMilliseconds:F3}");

        /// <summary>The outputs the request asked for (all when it named none), each with its encoding.</summary>
        static List<(Tensor, bool)> Selected(InferRequest request, IReadOnlyList<Tensor> outputs) =>
            request.RequestedOutputs is { } wanted
                ? [.. wanted.Select(w => (outputs.First(o => o.Name == w.Name), w.Binary ?? request.BinaryDataOutput))]
                : [.. outputs.Select(o => (o, request.BinaryDataOutput))];

        Task UnknownModel(HttpContext context, string name) =>
            HttpHosting.WriteErrorAsync(context, StatusCodes.Status404NotFound, $"unknown model '{name}'; this server serves '{options.ModelName}'");
    }
}
