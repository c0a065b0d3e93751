using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Routing;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;

namespace Adaptive.ModelServer.Routing;

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
public sealed class PipelineForwarder(RouterOptions options, RouteTable routes, RouterMetrics metrics, VariantHealth health, StageClients clients, ILogger log)
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
            var answer = await clients.For(variant.Transport).Infer(stage.Name, variant, payload, ServerTime(route, s, started, time), attempt.Token);
            route.Deadlines.Answered(s, Stopwatch.GetElapsedTime(called).TotalMilliseconds);
            metrics.StageRequest(pipeline, stage.Name, variant.Name, StatusCodes.Status200OK);
            health.Succeeded(variant.Endpoint);
            return answer;
        }
        catch (OperationCanceledException) when (attempt.IsCancellationRequested && !deadline.IsCancellationRequested)
        {
            metrics.StageRequest(pipeline, stage.Name, variant.Name, StatusCodes.Status504GatewayTimeout);
            Failed(pipeline, stage, variant);
            throw new StageFailure(StatusCodes.Status504GatewayTimeout, $"{StageFailure.Where(stage.Name, variant)} did not answer within {time!.Value.TotalMilliseconds:F0} ms", variantFailed: true);
        }
        catch (StageFailure e)
        {
            metrics.StageRequest(pipeline, stage.Name, variant.Name, e.StatusCode);
            if (e.VariantFailed) Failed(pipeline, stage, variant);
            else health.Succeeded(variant.Endpoint); // it answered: the request was at fault
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

    /// <summary>The metadata the stage's model declares, from the first of its healthy variants that answers (all serve one interface); kept per stage.</summary>
    async Task<JsonObject> StageMetadata(StageRoute stage, CancellationToken cancellation)
    {
        if (stageMetadata.TryGetValue(stage.Name, out var cached)) return cached;
        var failures = new List<string>();
        foreach (var variant in stage.Variants.Where(v => health.IsUsable(v.Endpoint)))
        {
            try
            {
                var metadata = await clients.For(variant.Transport).Metadata(stage.Name, variant, cancellation);
                if (metadata["inputs"] is not JsonArray || metadata["outputs"] is not JsonArray)
                    throw new StageFailure(StatusCodes.Status502BadGateway, $"{StageFailure.Where(stage.Name, variant)}: the metadata has no inputs or outputs");
                return stageMetadata[stage.Name] = metadata;
            }
            catch (StageFailure e)
            {
                failures.Add(e.Message);
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
}
