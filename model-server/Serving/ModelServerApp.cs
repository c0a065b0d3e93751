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
using Adaptive.ModelServer.Grpc;
using Prometheus;

namespace Adaptive.ModelServer.Serving;

/// <param name="ModelName">The name clients call (<c>/v2/models/{name}</c>): the pipeline's stage.</param>
/// <param name="Variant">Which variant of the stage this is, for the metrics' <c>variant</c> label.</param>
/// <param name="BodyBudgetBytes">The most bytes of request bodies read at once, over all requests; beyond it requests get 429.</param>
/// <param name="WarmUp">Whether the server sends itself <see cref="Warmup.Requests"/> before it listens.</param>
public sealed record ModelServerOptions(HttpOptions Http, string ModelPath, string ModelName, string Variant, BatchingOptions Batching, RuntimeOptions Runtime,
    long BodyBudgetBytes = ModelServerOptions.DefaultBodyBudgetBytes, bool WarmUp = true)
{
    public const long DefaultBodyBudgetBytes = 256L << 20;
}

/// <summary>
/// <c>adaptive-server serve</c>: one model variant behind the Open Inference Protocol's REST endpoints,
/// with a dynamic batcher between the HTTP requests and ONNX Runtime.
/// </summary>
public static class ModelServerApp
{
    /// <summary>What the request tensors' pool keeps for reuse: about a hundred 224×224 images.</summary>
    const long RetainedTensorBytes = 64L << 20;

    /// <summary>Loads the model and builds the web application; the caller runs it.</summary>
    /// <param name="loaded">The model of <c>options.ModelPath</c> already loaded, which the caller keeps and disposes
    /// (the benchmark measures raw <c>InferenceSession.Run</c> on the very session the server serves from); null loads it here.</param>
    public static WebApplication Build(ModelServerOptions options, OnnxModel? loaded = null)
    {
        var builder = HttpHosting.CreateBuilder(options.Http);
        builder.Services.AddSingleton(new TensorArrayPool(RetainedTensorBytes));
        var registry = Prometheus.Metrics.NewCustomRegistry();
        // process_* (CPU, memory, threads, handles) and the GC's counts and heap: a blow-up shows in Prometheus.
        Prometheus.DotNetStats.Register(registry);
        builder.Services.AddSingleton(services => Start(options, loaded, registry, services));
        var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Adaptive.ModelServer");
        var service = app.Services.GetRequiredService<InferenceService>(); // loads the model: a bad one fails here, before listening

        HttpHosting.MapHealth(app, () => true);
        app.MapMetrics("/metrics", registry);
        var rest = new RestEndpoints(service, log);
        HttpHosting.MapServerMetadata(app);
        HttpHosting.MapModel(app, rest);
        GrpcBodyBudget.Use(app, service.Bodies, options.Http.RequestTimeout, () => service.Metrics.Count(Outcome.QueueFull));
        if (options.Http.GrpcPort is not null) app.MapGrpcService<GrpcInferenceService>();
        return app;
    }

    /// <summary>Loads the model and starts its batcher, both stopped with the host (after Kestrel has finished the requests in flight).</summary>
    static InferenceService Start(ModelServerOptions options, OnnxModel? loaded, CollectorRegistry registry, IServiceProvider services)
    {
        var log = services.GetRequiredService<ILoggerFactory>().CreateLogger("Adaptive.ModelServer");
        var model = loaded ?? OnnxModel.Load(options.ModelPath, options.Runtime, warning => log.LogWarning("{Warning}", warning));
        var batching = model.SupportsBatching ? options.Batching : options.Batching with { MaxBatchSize = 1 };
        if (!model.SupportsBatching && options.Batching.MaxBatchSize > 1)
            log.LogWarning("{Model} has a fixed first dimension, so requests cannot be stacked: max batch size 1", options.ModelPath);
        log.LogInformation("Loaded {Model} as '{Name}' (variant {Variant}) on {Provider} in {LoadMs:F0} ms; {IntraOpThreads} intra-op threads{Pinning}, max batch {MaxBatch}, max queue delay {DelayMs} ms",
            options.ModelPath, options.ModelName, options.Variant, model.ExecutionProvider, model.LoadTime.TotalMilliseconds,
            options.Runtime.EffectiveIntraOpThreads, model.Pinning is { } pinned ? $" (pinned: the caller on CPU {pinned.CallerCpu}, workers on [{string.Join(", ", pinned.WorkerCpus)}])" : "",
            batching.MaxBatchSize, batching.MaxQueueDelay.TotalMilliseconds);

        var metrics = new ModelMetrics(registry, options.ModelName, options.Variant);
        metrics.LoadDuration.Set(model.LoadTime.TotalSeconds);
        var batcher = new DynamicBatcher(new OnnxBackend(model), batching, metrics);
        services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopped.Register(() =>
        {
            batcher.Dispose();
            if (loaded is null) model.Dispose();
        });
        if (options.WarmUp && WarmUp(options, model, batching, services, log) is { } warmUp) metrics.WarmUpDuration.Set(warmUp.TotalSeconds);
        return new InferenceService(options, model, batching, batcher, services.GetRequiredService<TensorArrayPool>(), metrics);
    }

    /// <summary>
    /// Runs <see cref="Warmup.Requests"/> through the REST handler, on a batcher and metrics of their own, so that they neither
    /// show in the server's metrics nor wait behind anything. Returns how long it took; null where there was none, or it failed
    /// (which is logged: the server then starts cold).
    /// </summary>
    static TimeSpan? WarmUp(ModelServerOptions options, OnnxModel model, BatchingOptions batching, IServiceProvider services, ILogger log)
    {
        var requests = Warmup.Requests(model.Inputs, model.SupportsBatching);
        if (requests.Count == 0)
        {
            log.LogInformation("No warm-up: an input of {Model} has a dimension other than the batch one left open", options.ModelPath);
            return null;
        }
        long started = Stopwatch.GetTimestamp();
        var metrics = new ModelMetrics(Prometheus.Metrics.NewCustomRegistry(), options.ModelName, options.Variant);
        using var batcher = new DynamicBatcher(new OnnxBackend(model), batching, metrics);
        var rest = new RestEndpoints(new InferenceService(options, model, batching, batcher, services.GetRequiredService<TensorArrayPool>(), metrics), log);
        foreach (var (body, headerLength) in requests)
        {
            var context = new DefaultHttpContext { RequestServices = services };
            context.Request.Method = HttpMethods.Post;
            context.Request.ContentType = headerLength is null ? "application/json" : "application/octet-stream";
            if (headerLength is { } length) context.Request.Headers[InferRequestReader.HeaderLengthHeader] = length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            context.Request.ContentLength = body.Length;
            context.Request.Body = new MemoryStream(body);
            var answer = new MemoryStream();
            context.Response.Body = answer;
            rest.Infer(context, options.ModelName, null).GetAwaiter().GetResult();
            if (context.Response.StatusCode != StatusCodes.Status200OK)
            {
                log.LogWarning("Warm-up request failed ({Status}: {Answer}); serving cold", context.Response.StatusCode, System.Text.Encoding.UTF8.GetString(answer.ToArray()));
                return null;
            }
        }
        var took = Stopwatch.GetElapsedTime(started);
        log.LogInformation("Warmed up with {Requests} requests in {WarmUpMs:F0} ms", requests.Count, took.TotalMilliseconds);
        return took;
    }

    sealed class OnnxBackend(OnnxModel model) : IBatchBackend
    {
        public IReadOnlyList<IReadOnlyList<Tensor>> Run(IReadOnlyList<InferRequest> batch) => model.Run(batch);
    }

    /// <summary>The REST front end: reads requests from HTTP, hands them to the <see cref="InferenceService"/>, writes its answers and errors.</summary>
    sealed class RestEndpoints(InferenceService service, ILogger log) : IModelEndpoints
    {
        public Task Metadata(HttpContext context, string name, string? version)
        {
            try
            {
                service.CheckModel(name, version);
            }
            catch (ProtocolException e)
            {
                return HttpHosting.WriteErrorAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
            }
            var body = new ArrayBufferWriter<byte>();
            using (var json = new Utf8JsonWriter(body))
            {
                json.WriteStartObject();
                json.WriteString("name", service.ModelName);
                json.WriteStartArray("versions");
                json.WriteStringValue(InferenceService.Version);
                json.WriteEndArray();
                json.WriteString("platform", InferenceService.Platform);
                WriteSpecs(json, "inputs", service.Inputs);
                WriteSpecs(json, "outputs", service.Outputs);
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

        public Task ModelReady(HttpContext context, Readiness readiness, string name, string? version)
        {
            try
            {
                service.CheckModel(name, version);
            }
            catch (ProtocolException e)
            {
                return HttpHosting.WriteErrorAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
            }
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
            if (!request.Headers.TryGetValue(StageDeadlines.TimeoutHeader, out var given)) return service.RequestTimeout;
            if (given.Count != 1 || !double.TryParse(given[0], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double ms)
                || !(ms >= 0) || !double.IsFinite(ms))
                throw ProtocolException.Invalid($"{StageDeadlines.TimeoutHeader} must be a number of milliseconds, 0 or more; got '{given}'");
            var time = TimeSpan.FromMilliseconds(ms);
            return time < service.RequestTimeout ? time : service.RequestTimeout;
        }

        /// <summary>
        /// One inference request, within its deadline from arrival: reading the body counts (a slow body gets
        /// 408 and cannot hold a slot longer), the batcher gets what is left. Every client error is a 4xx with
        /// <c>{"error": ...}</c>; a client that goes away is counted as such and logged without a stack trace;
        /// 500 is left for ONNX Runtime failing on a valid request.
        /// </summary>
        public async Task Infer(HttpContext context, string name, string? version)
        {
            long started = Stopwatch.GetTimestamp();
            var metrics = service.Metrics;
            metrics.InFlight.Inc();
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            deadline.CancelAfter(service.RequestTimeout);
            bool bodyRead = false;
            try
            {
                service.CheckModel(name, version);
                var timeout = TimeoutOf(context.Request);
                var request = await HttpHosting.ReadInferRequestAsync(context, service.Arrays, service.Contract, service.Bodies, deadline.Token);
                bodyRead = true;
                var result = await service.InferAsync(request, timeout - Stopwatch.GetElapsedTime(started));
                context.Response.Headers["Server-Timing"] = InferenceService.ServerTiming(result);
                var response = new ArrayBufferWriter<byte>();
                int? headerLength = InferResponseWriter.WriteResponse(response, service.ModelName, request.Id, result.Outputs);
                await HttpHosting.WriteInferResponseAsync(context, response, headerLength);
                metrics.Count(Outcome.Success);
            }
            catch (Exception e) when (context.RequestAborted.IsCancellationRequested || e is ConnectionResetException || EndedMidBody(e))
            {
                metrics.Count(Outcome.ClientClosed);
                log.LogInformation("A client of {Model} went away before its answer ({Error})", service.ModelName, e.GetType().Name);
            }
            catch (OperationCanceledException) when (deadline.IsCancellationRequested && !bodyRead)
            {
                metrics.Count(Outcome.Timeout);
                await HttpHosting.RefuseBodyAsync(context, StatusCodes.Status408RequestTimeout, $"the request body did not arrive within the request's {service.RequestTimeout.TotalMilliseconds:F0} ms deadline");
            }
            catch (BadHttpRequestException e)
            {
                // Kestrel's own refusals while reading the body: malformed chunking, a body too slow or too large.
                metrics.Count(e.StatusCode switch
                {
                    StatusCodes.Status413PayloadTooLarge => Outcome.TooLarge,
                    StatusCodes.Status408RequestTimeout => Outcome.Timeout,
                    _ => Outcome.BadRequest,
                });
                await HttpHosting.RefuseBodyAsync(context, e.StatusCode, $"bad request body: {e.Message}");
            }
            catch (ProtocolException e)
            {
                metrics.Count(ModelMetrics.Of(e.Kind));
                if (bodyRead) await HttpHosting.WriteErrorAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
                else await HttpHosting.RefuseBodyAsync(context, HttpHosting.StatusOf(e.Kind), e.Message);
            }
            catch (HttpHosting.BodyBudgetException e)
            {
                metrics.Count(Outcome.QueueFull);
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
                log.LogError(e, "Inference failed for model {Model}", service.ModelName);
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
    }
}
