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
        var app = builder.Build();
        app.Lifetime.ApplicationStopped.Register(http.Dispose);
        var forwarder = new PipelineForwarder(options, routes, metrics, health, http, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Adaptive.Router"));

        HttpHosting.MapHealth(app, () => routes.Current.Config.Stages.All(s => s.Variants.Any(v => health.IsUsable(v.Endpoint))));
        app.MapMetrics("/metrics", registry);
        app.MapGet("/v2/models/{name}/ready", (HttpContext context, string name, Readiness readiness) =>
            name != routes.Current.Config.Pipeline
                ? HttpHosting.WriteErrorAsync(context, StatusCodes.Status404NotFound, $"unknown pipeline '{name}'; this router serves '{routes.Current.Config.Pipeline}'")
                : Results.Json(new { name, ready = !readiness.IsDraining }, statusCode: readiness.IsDraining ? 503 : 200).ExecuteAsync(context));
        app.MapPost("/v2/models/{name}/infer", forwarder.Infer);
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

/// <summary>
/// Sends one pipeline request through the stages. At each stage a failure of the variant (no connection, a
/// reset, a 5xx, no answer in its share of the time) is retried once on another healthy variant; a client's
/// error (4xx) is not. What still fails ends the request with that error, named.
/// </summary>
sealed class PipelineForwarder(RouterOptions options, RouteTable routes, RouterMetrics metrics, VariantHealth health, HttpClient http, ILogger log)
{
    /// <summary>A request or response body; <see cref="HeaderLength"/> is set when binary tensor data follows a JSON header.</summary>
    sealed record Message(byte[] Body, int? HeaderLength);

    readonly ConcurrentDictionary<string, string[]> inputNames = new();
    readonly BodyBudget bodies = new(options.BodyBudgetBytes);
    int inFlight;

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

    public async Task Infer(HttpContext context, string name)
    {
        var route = routes.Current; // one configuration for the whole request
        string pipeline = route.Config.Pipeline;
        if (name != pipeline)
        {
            await HttpHosting.WriteErrorAsync(context, StatusCodes.Status404NotFound, $"unknown pipeline '{name}'; this router serves '{pipeline}'");
            return;
        }
        long started = Stopwatch.GetTimestamp();
        metrics.InFlight.Inc();
        string outcome = "error";
        try
        {
            if (Interlocked.Increment(ref inFlight) > options.MaxInFlight)
                throw new StageFailure(StatusCodes.Status429TooManyRequests, $"the router has {options.MaxInFlight} requests in progress", TimeSpan.FromSeconds(1));
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            deadline.CancelAfter(options.Http.RequestTimeout);
            var payload = await ReadRequest(context, deadline.Token);
            try
            {
                for (int s = 0; s < route.Config.Stages.Count; s++)
                {
                    var stage = route.Config.Stages[s];
                    payload = await CallStageWithRetry(route, s, payload, started, deadline.Token);
                    if (s + 1 < route.Config.Stages.Count)
                    {
                        var next = route.Config.Stages[s + 1];
                        payload = NextStageRequest(payload, await InputNames(next, deadline.Token), stage.Name, next.Name);
                    }
                }
            }
            catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
            {
                throw new StageFailure(StatusCodes.Status504GatewayTimeout, $"the pipeline did not answer within {options.Http.RequestTimeout.TotalMilliseconds:F0} ms");
            }
            context.Response.ContentType = payload.HeaderLength is null ? "application/json" : "application/octet-stream";
            if (payload.HeaderLength is { } length) context.Response.Headers[InferRequestReader.HeaderLengthHeader] = length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await context.Response.Body.WriteAsync(payload.Body, context.RequestAborted);
            outcome = "ok";
        }
        catch (ProtocolException e)
        {
            outcome = "bad_request";
            await HttpHosting.WriteErrorAsync(context, e.StatusCode, e.Message);
        }
        catch (BodyRefused e)
        {
            outcome = e.StatusCode == StatusCodes.Status429TooManyRequests ? "rejected" : "bad_request";
            await HttpHosting.RefuseBodyAsync(context, e.StatusCode, e.Message, e.RetryAfter);
        }
        catch (Exception) when (context.RequestAborted.IsCancellationRequested)
        {
            outcome = "client_closed"; // the client went away: nobody to answer
        }
        catch (StageFailure e)
        {
            outcome = e.StatusCode switch
            {
                StatusCodes.Status429TooManyRequests or StatusCodes.Status503ServiceUnavailable => "rejected",
                StatusCodes.Status504GatewayTimeout => "timeout",
                >= 400 and < 500 => "bad_request",
                _ => "error",
            };
            await HttpHosting.WriteErrorAsync(context, e.StatusCode, e.Message, e.RetryAfter);
        }
        finally
        {
            Interlocked.Decrement(ref inFlight);
            metrics.InFlight.Dec();
            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            metrics.Request(pipeline, outcome, seconds);
            if (route.Config.SloMs is { } slo && outcome is not ("bad_request" or "client_closed") && (outcome != "ok" || seconds * 1000 > slo))
                metrics.SloMiss(pipeline);
        }
    }

    /// <summary>
    /// One stage: a healthy variant by weight; if it fails (not the request), one other healthy variant, in
    /// what is left of the deadline. The first try gets half of what is left when there is another to try,
    /// so that a hung variant leaves time for the retry.
    /// </summary>
    /// <summary>
    /// The client's request, read within the request's deadline (408 past it) and within the budget of bodies
    /// being read at once (429 beyond it): neither a slow body nor many large ones can hold the router.
    /// </summary>
    async Task<Message> ReadRequest(HttpContext context, CancellationToken deadline)
    {
        using var share = bodies.TryTake(context.Request.ContentLength ?? options.Http.MaxBodyBytes)
            ?? throw new BodyRefused(StatusCodes.Status429TooManyRequests, $"the router is reading as many request bodies as its {bodies.TotalBytes}-byte budget holds; retry shortly", TimeSpan.FromSeconds(1));
        try
        {
            return new Message([.. await HttpHosting.ReadBodyAsync(context, deadline)], InferRequestReader.HeaderLength(context.Request));
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

    async Task<Message> CallStageWithRetry(RouteTable.Routes route, int s, Message payload, long started, CancellationToken deadline)
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
    async Task<Message> Attempt(RouteTable.Routes route, int s, VariantRoute variant, Message payload, TimeSpan? time, long started, CancellationToken deadline)
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

    async Task<Message> CallStage(string pipeline, StageRoute stage, VariantRoute variant, Message payload, TimeSpan serverTime, CancellationToken cancellation)
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
                return new Message(body, headerLength);
            }
            int status = (int)response.StatusCode;
            throw new StageFailure(status is >= 400 and < 600 ? status : StatusCodes.Status502BadGateway,
                $"{where}: {ErrorMessage(body)}", response.Headers.RetryAfter?.Delta, variantFailed: status >= 500 || status < 400);
        }
    }

    /// <summary>The inputs the stage's model declares, from the metadata of its first healthy variant that answers (all serve one interface); kept per stage.</summary>
    async Task<string[]> InputNames(StageRoute stage, CancellationToken cancellation)
    {
        if (inputNames.TryGetValue(stage.Name, out var cached)) return cached;
        var failures = new List<string>();
        foreach (var variant in stage.Variants.Where(v => health.IsUsable(v.Endpoint)))
        {
            string url = $"{variant.Endpoint.TrimEnd('/')}/v2/models/{stage.Name}";
            try
            {
                using var metadata = await JsonDocument.ParseAsync(await http.GetStreamAsync(url, cancellation), cancellationToken: cancellation);
                var names = metadata.RootElement.GetProperty("inputs").EnumerateArray().Select(i => i.GetProperty("name").GetString()!).ToArray();
                return inputNames[stage.Name] = names;
            }
            catch (Exception e) when (e is HttpRequestException or JsonException or KeyNotFoundException or InvalidOperationException)
            {
                failures.Add($"{url}: {e.Message}");
            }
        }
        throw new StageFailure(StatusCodes.Status502BadGateway, $"cannot read the inputs of stage '{stage.Name}' from any healthy variant ({string.Join("; ", failures)})");
    }

    /// <summary>
    /// The response of one stage as the request of the next: its outputs, in order, renamed to the next
    /// model's inputs. Binary outputs stay binary (their bytes follow the new header unchanged), and the
    /// next stage is asked for binary outputs too, so the client gets the encoding it asked stage one for.
    /// </summary>
    static Message NextStageRequest(Message response, string[] nextInputs, string stage, string nextStage)
    {
        int headerLength = response.HeaderLength ?? response.Body.Length;
        if (headerLength < 0 || headerLength > response.Body.Length)
            throw new StageFailure(StatusCodes.Status502BadGateway, $"stage '{stage}' answered with a header longer than its body");
        var node = JsonNode.Parse(response.Body.AsSpan(0, headerLength))?.AsObject() ?? throw new StageFailure(StatusCodes.Status502BadGateway, $"stage '{stage}' answered with an empty body");
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
        if (response.HeaderLength is null) return new Message(JsonSerializer.SerializeToUtf8Bytes(request), null);
        request["parameters"] = new JsonObject { ["binary_data_output"] = true };
        byte[] header = JsonSerializer.SerializeToUtf8Bytes(request);
        return new Message([.. header, .. response.Body.AsSpan(headerLength)], header.Length);
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
