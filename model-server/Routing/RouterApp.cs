using Adaptive.Core.Routing;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;
using Microsoft.Extensions.Hosting;
using Prometheus;

namespace Adaptive.ModelServer.Routing;

/// <param name="ConfigPollInterval">How often the configuration file is compared with the one loaded.
/// Polling the content, not file events, is what works with ConfigMap volumes, which swap a symlink.</param>
/// <param name="MaxInFlight">Most pipeline requests in progress at once; more are refused with 429.</param>
/// <param name="BodyBudgetBytes">The most bytes of request bodies read at once, over all requests; beyond it requests get 429.</param>
public sealed record RouterOptions(HttpOptions Http, string ConfigPath, TimeSpan ConfigPollInterval, int MaxInFlight,
    long BodyBudgetBytes = Serving.ModelServerOptions.DefaultBodyBudgetBytes);

/// <summary>
/// <c>adaptive-server router</c>: the pipeline's entry point. A request to <c>/v2/models/{pipeline}/infer</c>
/// goes through the stages in order; at each stage one variant is chosen by weight among the healthy ones,
/// and the stage's outputs become the next stage's inputs (renamed, in order, to the inputs the next model
/// declares). A variant that cannot be reached, resets, answers 5xx or not in time is tried no more for
/// that request: it goes to another variant of the stage once, within the deadline; one that fails in a
/// row is ejected (<see cref="VariantHealth"/>) until a probe finds it ready. The router is ready while
/// every stage has a variant that is not ejected.
/// </summary>
public static class RouterApp
{
    public static WebApplication Build(RouterOptions options)
    {
        var routes = new RouteTable(RouterConfig.Parse(ReadConfig(options.ConfigPath)));
        var builder = HttpHosting.CreateBuilder(options.Http);
        var registry = Prometheus.Metrics.NewCustomRegistry();
        // process_* (CPU, memory, threads, handles) and the GC's counts and heap: a blow-up shows in Prometheus.
        Prometheus.DotNetStats.Register(registry);
        var metrics = new RouterMetrics(registry);
        metrics.ConfigGeneration.Set(1);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(routes);
        builder.Services.AddSingleton(metrics);
        var health = new VariantHealth(TimeProvider.System);
        builder.Services.AddSingleton(health);
        builder.Services.AddHostedService<ConfigReloader>();
        builder.Services.AddHostedService<VariantProber>();
        var http = new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(1), // see Service endpoint changes
            ConnectTimeout = TimeSpan.FromSeconds(2),
        })
        {
            Timeout = Timeout.InfiniteTimeSpan, // each request has its own deadline
            MaxResponseContentBufferSize = options.Http.MaxBodyBytes,
        };
        builder.Services.AddSingleton(http);
        builder.Services.AddSingleton(services => new PipelineForwarder(options, routes, metrics, health, http,
            services.GetRequiredService<ILoggerFactory>().CreateLogger("Adaptive.Router")));
        var app = builder.Build();
        app.Lifetime.ApplicationStopped.Register(http.Dispose);
        var forwarder = app.Services.GetRequiredService<PipelineForwarder>();

        HttpHosting.MapHealth(app, () => forwarder.StagesUsable);
        app.MapMetrics("/metrics", registry);
        HttpHosting.MapServerMetadata(app);
        var rest = new RouterRestEndpoints(forwarder);
        HttpHosting.MapModel(app, rest);
        Grpc.GrpcBodyBudget.Use(app, forwarder.Bodies, options.Http.RequestTimeout, forwarder.CountBudgetRefusal);
        if (options.Http.GrpcPort is not null) app.MapGrpcService<Grpc.GrpcRouterService>();
        return app;
    }

    internal static string ReadConfig(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RouterConfigException($"cannot read router configuration {path}: {e.Message}");
        }
    }
}

/// <summary>The configuration in use and a weighted chooser per stage, swapped whole on reload.</summary>
public sealed class RouteTable(RouterConfig initial)
{
    public sealed record Routes(RouterConfig Config, IReadOnlyList<WeightedChooser<VariantRoute>> Choosers, StageDeadlines Deadlines, long Generation);

    volatile Routes current = Create(initial, 1);

    public Routes Current => current;

    public void Replace(RouterConfig config) => current = Create(config, current.Generation + 1);

    static Routes Create(RouterConfig config, long generation) =>
        new(config, [.. config.Stages.Select(s => new WeightedChooser<VariantRoute>(s.Variants, v => v.Weight))], new StageDeadlines(config.Stages.Count), generation);
}

/// <summary>Reloads the configuration when the file's content changes; a bad file keeps the last good configuration.</summary>
sealed class ConfigReloader(RouterOptions options, RouteTable routes, RouterMetrics metrics, ILogger<ConfigReloader> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        string loaded = RouterApp.ReadConfig(options.ConfigPath);
        using var timer = new PeriodicTimer(options.ConfigPollInterval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            string text;
            try
            {
                text = RouterApp.ReadConfig(options.ConfigPath);
                if (text == loaded) continue;
                routes.Replace(RouterConfig.Parse(text));
            }
            catch (RouterConfigException e)
            {
                metrics.Reload(success: false);
                log.LogError("Keeping configuration generation {Generation}: {Problem}", routes.Current.Generation, e.Message);
                continue;
            }
            loaded = text;
            metrics.Reload(success: true);
            metrics.ConfigGeneration.Set(routes.Current.Generation);
            log.LogInformation("Loaded configuration generation {Generation}: {Weights}", routes.Current.Generation,
                string.Join("; ", routes.Current.Config.Stages.Select(s => $"{s.Name}: {string.Join(", ", s.Variants.Select(v => $"{v.Name}={v.Weight:G4}"))}")));
        }
    }
}

/// <summary>
/// Probes the ejected variants whose back-off has passed (<c>/v2/health/ready</c>, 1 s to answer): a ready one
/// takes traffic again, another stays out for longer.
/// </summary>
sealed class VariantProber(VariantHealth health, HttpClient http, ILogger<VariantProber> log) : BackgroundService
{
    static readonly TimeSpan Period = TimeSpan.FromMilliseconds(250);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period);
        while (await timer.WaitForNextTickAsync(stoppingToken))
            await Task.WhenAll(health.DueForProbe().Select(endpoint => Probe(endpoint, stoppingToken)));
    }

    async Task Probe(string endpoint, CancellationToken stopping)
    {
        bool ready;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        timeout.CancelAfter(TimeSpan.FromSeconds(1));
        try
        {
            using var response = await http.GetAsync($"{endpoint.TrimEnd('/')}/v2/health/ready", timeout.Token);
            ready = response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !stopping.IsCancellationRequested)
        {
            ready = false;
        }
        health.Probed(endpoint, ready);
        if (ready) log.LogInformation("{Endpoint} is ready again: it takes traffic", endpoint);
    }
}

/// <summary>A request or response body; <see cref="HeaderLength"/> is set when binary tensor data follows a JSON header.</summary>
public sealed record StageMessage(byte[] Body, int? HeaderLength);

/// <summary>What came out of the last stage (its <c>model_name</c> the pipeline's), and each stage's time in milliseconds.</summary>
public sealed record PipelineAnswer(StageMessage Response, IReadOnlyList<(string Stage, double Ms)> StageTimes)
{
    /// <summary>The W3C Server-Timing value: one entry per stage, retries included.</summary>
    public string ServerTiming => string.Join(", ", StageTimes.Select(t => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{t.Stage};dur={t.Ms:F3}")));
}

/// <summary>
/// A pipeline request that failed, as an HTTP status (the front ends map it to theirs); <see cref="BodyUnread"/>:
/// refused before its body was read to its end, so the answer must close the connection.
/// </summary>
public sealed class PipelineFailure(int statusCode, string message, TimeSpan? retryAfter, bool bodyUnread) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
    public TimeSpan? RetryAfter { get; } = retryAfter;
    public bool BodyUnread { get; } = bodyUnread;
}

/// <summary>
/// Sends one pipeline request through the stages, whatever carried it. At each stage a failure of the variant
/// (no connection, a reset, a 5xx, no answer in its share of the time) is retried once on another healthy
/// variant; a client's error (4xx) is not. What still fails ends the request with a <see cref="PipelineFailure"/>
/// naming it. The request counter's outcome and the SLO misses are counted here, once per request.
/// </summary>
public sealed class PipelineForwarder(RouterOptions options, RouteTable routes, RouterMetrics metrics, VariantHealth health, HttpClient http, ILogger log)
{
    /// <summary>The metadata each stage's model declares, from its first healthy variant that answers; kept per stage.</summary>
    readonly ConcurrentDictionary<string, JsonObject> stageMetadata = new();
    int inFlight;

    /// <summary>The budget of request bytes being read at once, over both transports.</summary>
    public BodyBudget Bodies { get; } = new(options.BodyBudgetBytes);
    public RouterOptions Options => options;
    public RouteTable Routes => routes;

    /// <summary>The client's body was refused before it was read to its end: the answer closes the connection.</summary>
    sealed class BodyRefused(int statusCode, string message, TimeSpan? retryAfter = null) : Exception(message)
    {
        public int StatusCode { get; } = statusCode;
        public TimeSpan? RetryAfter { get; } = retryAfter;
    }

    /// <param name="VariantFailed">The variant, not the request, was at fault: worth another variant, and counted against it.</param>
    sealed class StageFailure(int statusCode, string message, TimeSpan? retryAfter = null, bool variantFailed = false) : Exception(message)
    {
        public int StatusCode { get; } = statusCode;
        public TimeSpan? RetryAfter { get; } = retryAfter;
        public bool VariantFailed { get; } = variantFailed;
    }

    /// <summary>A request refused before it reached <see cref="Run"/> because the body budget was spent (gRPC's check comes first).</summary>
    public void CountBudgetRefusal() => metrics.Request(routes.Current.Config.Pipeline, ModelMetrics.LabelValue(Outcome.QueueFull), 0);

    /// <summary>Whether every stage has a variant that takes traffic: the router's readiness, draining aside.</summary>
    public bool StagesUsable => routes.Current.Config.Stages.All(s => s.Variants.Any(v => health.IsUsable(v.Endpoint)));

    /// <summary>Throws <see cref="ErrorKind.NotFound"/> unless <paramref name="name"/> (and <paramref name="version"/>, when given) is the pipeline served.</summary>
    public static void CheckPipeline(RouteTable.Routes route, string name, string? version)
    {
        string pipeline = route.Config.Pipeline;
        if (name != pipeline) throw new ProtocolException(ErrorKind.NotFound, $"unknown pipeline '{name}'; this router serves '{pipeline}'");
        if (!string.IsNullOrEmpty(version) && version != Serving.InferenceService.Version)
            throw new ProtocolException(ErrorKind.NotFound, $"unknown version '{version}' of pipeline '{name}'; it has version '{Serving.InferenceService.Version}'");
    }

    /// <summary>
    /// One pipeline request: admission (at most <see cref="RouterOptions.MaxInFlight"/> at once), its body from
    /// <paramref name="read"/> within the request's deadline, the stages in order, and the answer renamed to
    /// the pipeline. <paramref name="aborted"/>: the client went away (then whatever was thrown goes on, counted
    /// as client_closed); every other failure is a <see cref="PipelineFailure"/>.
    /// </summary>
    public async Task<PipelineAnswer> Run(RouteTable.Routes route, Func<CancellationToken, Task<StageMessage>> read, CancellationToken aborted)
    {
        string pipeline = route.Config.Pipeline;
        long started = Stopwatch.GetTimestamp();
        metrics.InFlight.Inc();
        var outcome = Outcome.Error;
        bool clientsFault = false;
        try
        {
            if (Interlocked.Increment(ref inFlight) > options.MaxInFlight)
                throw new StageFailure(StatusCodes.Status429TooManyRequests, $"the router has {options.MaxInFlight} requests in progress", TimeSpan.FromSeconds(1));
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(aborted);
            deadline.CancelAfter(options.Http.RequestTimeout);
            var payload = await read(deadline.Token);
            var times = new List<(string, double)>(route.Config.Stages.Count);
            try
            {
                for (int s = 0; s < route.Config.Stages.Count; s++)
                {
                    var stage = route.Config.Stages[s];
                    long stageStarted = Stopwatch.GetTimestamp();
                    payload = await CallStageWithRetry(route, s, payload, started, deadline.Token);
                    times.Add((stage.Name, Stopwatch.GetElapsedTime(stageStarted).TotalMilliseconds));
                    if (s + 1 < route.Config.Stages.Count)
                    {
                        var next = route.Config.Stages[s + 1];
                        payload = NextStageRequest(payload, InputNames(await StageMetadata(next, deadline.Token)), stage.Name, next.Name);
                    }
                }
            }
            catch (OperationCanceledException) when (!aborted.IsCancellationRequested)
            {
                throw new StageFailure(StatusCodes.Status504GatewayTimeout, $"the pipeline did not answer within {options.Http.RequestTimeout.TotalMilliseconds:F0} ms");
            }
            var answer = new PipelineAnswer(Renamed(payload, pipeline, route.Config.Stages[^1].Name), times);
            outcome = Outcome.Success;
            return answer;
        }
        catch (Exception) when (aborted.IsCancellationRequested)
        {
            outcome = Outcome.ClientClosed; // the client went away: nobody to answer
            throw;
        }
        catch (ProtocolException e)
        {
            (outcome, clientsFault) = (ModelMetrics.Of(e.Kind), true);
            throw new PipelineFailure(HttpHosting.StatusOf(e.Kind), e.Message, null, bodyUnread: false);
        }
        catch (BodyRefused e)
        {
            (outcome, clientsFault) = OutcomeOf(e.StatusCode);
            throw new PipelineFailure(e.StatusCode, e.Message, e.RetryAfter, bodyUnread: true);
        }
        catch (StageFailure e)
        {
            (outcome, clientsFault) = OutcomeOf(e.StatusCode);
            throw new PipelineFailure(e.StatusCode, e.Message, e.RetryAfter, bodyUnread: false);
        }
        finally
        {
            Interlocked.Decrement(ref inFlight);
            metrics.InFlight.Dec();
            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            metrics.Request(pipeline, ModelMetrics.LabelValue(outcome), seconds);
            if (route.Config.SloMs is { } slo && !clientsFault && outcome != Outcome.ClientClosed && (outcome != Outcome.Success || seconds * 1000 > slo))
                metrics.SloMiss(pipeline);
        }
    }

    /// <summary>The outcome of a request that ended with HTTP <paramref name="status"/>, and whether the client was at fault (a 4xx but 429).</summary>
    static (Outcome, bool ClientsFault) OutcomeOf(int status) => status switch
    {
        StatusCodes.Status429TooManyRequests => (Outcome.QueueFull, false),
        StatusCodes.Status404NotFound => (Outcome.NotFound, true),
        StatusCodes.Status408RequestTimeout => (Outcome.Timeout, true),
        StatusCodes.Status413PayloadTooLarge => (Outcome.TooLarge, true),
        StatusCodes.Status504GatewayTimeout => (Outcome.Timeout, false),
        >= 400 and < 500 => (Outcome.BadRequest, true),
        _ => (Outcome.Error, false),
    };

    /// <summary>
    /// The client's REST request, read within the request's deadline (408 past it) and within the budget of bodies
    /// being read at once (429 beyond it): neither a slow body nor many large ones can hold the router.
    /// </summary>
    public async Task<StageMessage> ReadRequest(HttpContext context, CancellationToken deadline)
    {
        using var share = Bodies.TryTake(context.Request.ContentLength ?? options.Http.MaxBodyBytes)
            ?? throw new BodyRefused(StatusCodes.Status429TooManyRequests, $"the router is reading as many request bodies as its {Bodies.TotalBytes}-byte budget holds; retry shortly", TimeSpan.FromSeconds(1));
        try
        {
            return new StageMessage([.. await HttpHosting.ReadBodyAsync(context, deadline)], HttpHosting.HeaderLength(context.Request));
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            throw new BodyRefused(StatusCodes.Status408RequestTimeout, $"the request body did not arrive within the request's {options.Http.RequestTimeout.TotalMilliseconds:F0} ms deadline");
        }
        catch (BadHttpRequestException e) when (!context.RequestAborted.IsCancellationRequested)
        {
            throw new BodyRefused(e.StatusCode, $"bad request body: {e.Message}"); // Kestrel's: malformed chunking, too slow, too large
        }
    }

    /// <summary>
    /// The pipeline as one model: its inputs are the first stage's, its outputs the last stage's (from their
    /// model servers' metadata).
    /// </summary>
    public async Task<JsonObject> Metadata(RouteTable.Routes route, CancellationToken cancellation)
    {
        JsonObject first, last;
        try
        {
            first = await StageMetadata(route.Config.Stages[0], cancellation);
            last = await StageMetadata(route.Config.Stages[^1], cancellation);
        }
        catch (StageFailure e)
        {
            throw new PipelineFailure(e.StatusCode, e.Message, e.RetryAfter, bodyUnread: false);
        }
        return new JsonObject
        {
            ["name"] = route.Config.Pipeline,
            ["versions"] = new JsonArray(Serving.InferenceService.Version),
            ["platform"] = PipelinePlatform,
            ["inputs"] = first["inputs"]!.DeepClone(),
            ["outputs"] = last["outputs"]!.DeepClone(),
        };
    }

    /// <summary>Triton's platform name for a pipeline of models; the protocol's list has none for it.</summary>
    public const string PipelinePlatform = "ensemble";

    /// <summary>
    /// One stage: a healthy variant by weight; if it fails (not the request), one other healthy variant, in
    /// what is left of the deadline. The first try gets half of what is left when there is another to try,
    /// so that a hung variant leaves time for the retry.
    /// </summary>
    async Task<StageMessage> CallStageWithRetry(RouteTable.Routes route, int s, StageMessage payload, long started, CancellationToken deadline)
    {
        var (stage, chooser) = (route.Config.Stages[s], route.Choosers[s]);
        var first = chooser.Next(v => health.IsUsable(v.Endpoint))
            ?? throw new StageFailure(StatusCodes.Status503ServiceUnavailable, $"stage '{stage.Name}' has no healthy variant", TimeSpan.FromSeconds(1));
        bool another = stage.Variants.Any(v => v != first && health.IsUsable(v.Endpoint));
        var left = options.Http.RequestTimeout - Stopwatch.GetElapsedTime(started);
        try
        {
            return await Attempt(route, s, first, payload, another ? left / 2 : null, started, deadline);
        }
        catch (StageFailure e) when (e.VariantFailed && !deadline.IsCancellationRequested)
        {
            var second = chooser.Next(v => v != first && health.IsUsable(v.Endpoint));
            if (second is null) throw;
            metrics.Retry(route.Config.Pipeline, stage.Name);
            return await Attempt(route, s, second, payload, null, started, deadline);
        }
    }

    /// <summary>
    /// One call of one variant of stage <paramref name="s"/> within <paramref name="time"/> (null: the request's deadline alone); its
    /// health learns how it went, and the stage's time, <see cref="StageDeadlines"/>, when it answered.
    /// </summary>
    async Task<StageMessage> Attempt(RouteTable.Routes route, int s, VariantRoute variant, StageMessage payload, TimeSpan? time, long started, CancellationToken deadline)
    {
        var (pipeline, stage) = (route.Config.Pipeline, route.Config.Stages[s]);
        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(deadline);
        if (time is { } limit) attempt.CancelAfter(limit > TimeSpan.Zero ? limit : TimeSpan.Zero);
        try
        {
            long called = Stopwatch.GetTimestamp();
            var answer = await CallStage(pipeline, stage, variant, payload, ServerTime(route, s, started, time), attempt.Token);
            route.Deadlines.Answered(s, Stopwatch.GetElapsedTime(called).TotalMilliseconds);
            health.Succeeded(variant.Endpoint);
            return answer;
        }
        catch (OperationCanceledException) when (attempt.IsCancellationRequested && !deadline.IsCancellationRequested)
        {
            metrics.StageRequest(pipeline, stage.Name, variant.Name, StatusCodes.Status504GatewayTimeout);
            Failed(pipeline, stage, variant);
            throw new StageFailure(StatusCodes.Status504GatewayTimeout, $"stage '{stage.Name}' (variant '{variant.Name}') did not answer within {time!.Value.TotalMilliseconds:F0} ms", variantFailed: true);
        }
        catch (StageFailure e) when (e.VariantFailed)
        {
            Failed(pipeline, stage, variant);
            throw;
        }
        catch (StageFailure)
        {
            health.Succeeded(variant.Endpoint); // it answered: the request was at fault
            throw;
        }
    }

    /// <summary>
    /// The time the stage's model server gets for the request (<see cref="StageDeadlines.TimeoutHeader"/>): what is left of the
    /// router's deadline and of the attempt's share of it and, when the configuration names the pipeline's SLO, what is left of
    /// the SLO less what the later stages have been taking.
    /// </summary>
    TimeSpan ServerTime(RouteTable.Routes route, int s, long started, TimeSpan? attemptTime)
    {
        var elapsed = Stopwatch.GetElapsedTime(started);
        var time = options.Http.RequestTimeout - elapsed;
        if (attemptTime is { } limit && limit < time) time = limit;
        if (route.Config.SloMs is { } slo)
        {
            var forSlo = TimeSpan.FromMilliseconds(route.Deadlines.TimeForMs(s, slo - elapsed.TotalMilliseconds));
            if (forSlo < time) time = forSlo;
        }
        return time > TimeSpan.Zero ? time : TimeSpan.Zero;
    }

    void Failed(string pipeline, StageRoute stage, VariantRoute variant)
    {
        if (!health.Failed(variant.Endpoint)) return;
        metrics.Ejection(pipeline, stage.Name, variant.Name);
        log.LogWarning("Ejected variant {Variant} of stage {Stage} ({Endpoint}) after {Failures} failures in a row; it gets no traffic until a probe finds it ready",
            variant.Name, stage.Name, variant.Endpoint, VariantHealth.FailuresToEject);
    }

    async Task<StageMessage> CallStage(string pipeline, StageRoute stage, VariantRoute variant, StageMessage payload, TimeSpan serverTime, CancellationToken cancellation)
    {
        string where = $"stage '{stage.Name}' (variant '{variant.Name}')";
        using var content = new ByteArrayContent(payload.Body);
        content.Headers.ContentType = new MediaTypeHeaderValue(payload.HeaderLength is null ? "application/json" : "application/octet-stream");
        content.Headers.Add(StageDeadlines.TimeoutHeader, serverTime.TotalMilliseconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture));
        if (payload.HeaderLength is { } length) content.Headers.Add(InferRequestReader.HeaderLengthHeader, length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        HttpResponseMessage response;
        try
        {
            response = await http.PostAsync($"{variant.Endpoint.TrimEnd('/')}/v2/models/{stage.Name}/infer", content, cancellation);
        }
        catch (HttpRequestException e)
        {
            metrics.StageRequest(pipeline, stage.Name, variant.Name, StatusCodes.Status502BadGateway);
            throw new StageFailure(StatusCodes.Status502BadGateway, $"{where} at {variant.Endpoint} is unreachable: {e.Message}", variantFailed: true);
        }
        using (response)
        {
            metrics.StageRequest(pipeline, stage.Name, variant.Name, (int)response.StatusCode);
            byte[] body;
            try
            {
                body = await response.Content.ReadAsByteArrayAsync(cancellation);
            }
            catch (HttpRequestException e) // reset mid-answer
            {
                throw new StageFailure(StatusCodes.Status502BadGateway, $"{where} broke off its answer: {e.Message}", variantFailed: true);
            }
            if (response.IsSuccessStatusCode)
            {
                int? headerLength = response.Headers.TryGetValues(InferRequestReader.HeaderLengthHeader, out var values)
                    && int.TryParse(values.First(), System.Globalization.CultureInfo.InvariantCulture, out int parsed) ? parsed : null;
                return new StageMessage(body, headerLength);
            }
            int status = (int)response.StatusCode;
            throw new StageFailure(status is >= 400 and < 600 ? status : StatusCodes.Status502BadGateway,
                $"{where}: {ErrorMessage(body)}", response.Headers.RetryAfter?.Delta, variantFailed: status >= 500 || status < 400);
        }
    }

    /// <summary>The metadata the stage's model declares, from the first of its healthy variants that answers (all serve one interface); kept per stage.</summary>
    async Task<JsonObject> StageMetadata(StageRoute stage, CancellationToken cancellation)
    {
        if (stageMetadata.TryGetValue(stage.Name, out var cached)) return cached;
        var failures = new List<string>();
        foreach (var variant in stage.Variants.Where(v => health.IsUsable(v.Endpoint)))
        {
            string url = $"{variant.Endpoint.TrimEnd('/')}/v2/models/{stage.Name}";
            try
            {
                var metadata = JsonNode.Parse(await http.GetStringAsync(url, cancellation))?.AsObject();
                if (metadata?["inputs"] is not JsonArray || metadata["outputs"] is not JsonArray) throw new JsonException("no inputs or outputs");
                return stageMetadata[stage.Name] = metadata;
            }
            catch (Exception e) when (e is HttpRequestException or JsonException or InvalidOperationException)
            {
                failures.Add($"{url}: {e.Message}");
            }
        }
        throw new StageFailure(StatusCodes.Status502BadGateway, $"cannot read the metadata of stage '{stage.Name}' from any healthy variant ({string.Join("; ", failures)})");
    }

    static string[] InputNames(JsonObject metadata) => [.. metadata["inputs"]!.AsArray().Select(i => (string)i!["name"]!)];

    /// <summary>
    /// The last stage's answer as the pipeline's: <c>model_name</c> is the pipeline the client called (and the
    /// version its one version), not the stage that answered last.
    /// </summary>
    static StageMessage Renamed(StageMessage response, string pipeline, string stage)
    {
        var (header, rest) = Header(response, stage);
        header["model_name"] = pipeline;
        header["model_version"] = Serving.InferenceService.Version;
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        return response.HeaderLength is null ? new StageMessage(json, null) : new StageMessage([.. json, .. rest.Span], json.Length);
    }

    /// <summary>A stage's answer split into its JSON (the whole body, or the binary extension's header) and the bytes after it.</summary>
    static (JsonObject Header, ReadOnlyMemory<byte> After) Header(StageMessage response, string stage)
    {
        int headerLength = response.HeaderLength ?? response.Body.Length;
        if (headerLength < 0 || headerLength > response.Body.Length)
            throw new StageFailure(StatusCodes.Status502BadGateway, $"stage '{stage}' answered with a header longer than its body");
        try
        {
            var node = JsonNode.Parse(response.Body.AsSpan(0, headerLength)) as JsonObject
                ?? throw new StageFailure(StatusCodes.Status502BadGateway, $"stage '{stage}' answered with something other than a JSON object");
            return (node, response.Body.AsMemory(headerLength));
        }
        catch (JsonException e)
        {
            throw new StageFailure(StatusCodes.Status502BadGateway, $"stage '{stage}' answered with malformed JSON: {e.Message}");
        }
    }

    /// <summary>
    /// The response of one stage as the request of the next: its outputs, in order, renamed to the next
    /// model's inputs. Binary outputs stay binary (their bytes follow the new header unchanged), and the
    /// next stage is asked for binary outputs too, so the client gets the encoding it asked stage one for.
    /// </summary>
    static StageMessage NextStageRequest(StageMessage response, string[] nextInputs, string stage, string nextStage)
    {
        var (node, rest) = Header(response, stage);
        if (node["outputs"] is not JsonArray outputs || outputs.Count != nextInputs.Length)
            throw new StageFailure(StatusCodes.Status502BadGateway,
                $"stage '{stage}' returns {(node["outputs"] as JsonArray)?.Count ?? 0} outputs but stage '{nextStage}' takes {nextInputs.Length} inputs");
        node.Remove("outputs");
        for (int i = 0; i < outputs.Count; i++) outputs[i]!["name"] = nextInputs[i];
        var request = new JsonObject { ["inputs"] = outputs };
        if (node["id"] is { } id)
        {
            node.Remove("id");
            request["id"] = id;
        }
        if (response.HeaderLength is null) return new StageMessage(JsonSerializer.SerializeToUtf8Bytes(request), null);
        request["parameters"] = new JsonObject { ["binary_data_output"] = true };
        byte[] header = JsonSerializer.SerializeToUtf8Bytes(request);
        return new StageMessage([.. header, .. rest.Span], header.Length);
    }

    static string ErrorMessage(byte[] body)
    {
        try
        {
            using var json = JsonDocument.Parse(body);
            if (json.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.String) return error.GetString()!;
        }
        catch (JsonException)
        {
            // not the protocol's error format: fall through to the raw text
        }
        string text = System.Text.Encoding.UTF8.GetString(body);
        return text.Length > 200 ? text[..200] + "…" : text;
    }
}
