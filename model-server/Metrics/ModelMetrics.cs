using Prometheus;

namespace Adaptive.ModelServer.Metrics;

/// <summary>How a request ended: the <c>outcome</c> label of the request counter (model-server/README.md says when each is counted).</summary>
public enum Outcome
{
    Success,
    /// <summary>Malformed, or not what the model takes.</summary>
    BadRequest,
    /// <summary>An unknown model or version.</summary>
    NotFound,
    /// <summary>A body or message larger than the server accepts.</summary>
    TooLarge,
    /// <summary>The client went away (or cancelled) before its answer.</summary>
    ClientClosed,
    /// <summary>The body did not arrive in time, or the deadline passed while the request was queued.</summary>
    Timeout,
    /// <summary>No room: the queue is full, or the bodies being read hold the server's budget.</summary>
    QueueFull,
    /// <summary>The work ahead would make the request miss its deadline.</summary>
    DeadlineUnreachable,
    /// <summary>A server fault on a valid request.</summary>
    Error,
}

/// <summary>
/// The model server's Prometheus metrics, labelled by model (the name clients call, the pipeline's
/// stage) and variant. Each server has its own registry, so several can live in one test process.
/// </summary>
public sealed class ModelMetrics
{
    static readonly double[] LatencyBuckets = [.. Histogram.ExponentialBuckets(0.0005, 2, 16)]; // 0.5 ms … 16 s

    readonly Counter requests;
    readonly string model, variant;

    public Histogram.Child RequestDuration { get; }
    public Histogram.Child QueueWait { get; }
    public Histogram.Child BatchSize { get; }
    public Histogram.Child InferenceDuration { get; }
    public Gauge.Child QueueDepth { get; }
    public Gauge.Child InFlight { get; }
    public Gauge.Child LoadDuration { get; }
    public Gauge.Child WarmUpDuration { get; }

    public ModelMetrics(CollectorRegistry registry, string model, string variant)
    {
        this.model = model;
        this.variant = variant;
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        string[] labels = ["model", "variant"];
        requests = factory.CreateCounter("adaptive_model_requests_total", "Inference requests by outcome", [.. labels, "outcome"]);
        RequestDuration = factory.CreateHistogram("adaptive_model_request_duration_seconds", "Time from receiving an inference request to answering it",
            new HistogramConfiguration { LabelNames = labels, Buckets = LatencyBuckets }).WithLabels(model, variant);
        QueueWait = factory.CreateHistogram("adaptive_model_queue_wait_seconds", "Time a request waited in the batching queue",
            new HistogramConfiguration { LabelNames = labels, Buckets = LatencyBuckets }).WithLabels(model, variant);
        BatchSize = factory.CreateHistogram("adaptive_model_batch_size", "Rows per ONNX Runtime call",
            new HistogramConfiguration { LabelNames = labels, Buckets = Histogram.PowersOfTenDividedBuckets(0, 3, 10) }).WithLabels(model, variant);
        InferenceDuration = factory.CreateHistogram("adaptive_model_inference_duration_seconds", "Time of one ONNX Runtime call (a whole batch)",
            new HistogramConfiguration { LabelNames = labels, Buckets = LatencyBuckets }).WithLabels(model, variant);
        QueueDepth = factory.CreateGauge("adaptive_model_queue_depth", "Requests waiting in the batching queue", labels).WithLabels(model, variant);
        InFlight = factory.CreateGauge("adaptive_model_inflight_requests", "Requests received and not yet answered", labels).WithLabels(model, variant);
        LoadDuration = factory.CreateGauge("adaptive_model_load_duration_seconds", "Time it took to load the model into ONNX Runtime", labels).WithLabels(model, variant);
        WarmUpDuration = factory.CreateGauge("adaptive_model_warmup_duration_seconds", "Time the requests the server sent itself before listening took; 0 without a warm-up", labels).WithLabels(model, variant);
        foreach (var outcome in Enum.GetValues<Outcome>()) Count(outcome, 0); // export every series from the start
    }

    public void Count(Outcome outcome, int requestCount = 1) =>
        requests.WithLabels(model, variant, LabelValue(outcome)).Inc(requestCount);

    public static string LabelValue(Outcome outcome) => outcome switch
    {
        Outcome.Success => "success",
        Outcome.BadRequest => "bad_request",
        Outcome.NotFound => "not_found",
        Outcome.TooLarge => "too_large",
        Outcome.ClientClosed => "client_closed",
        Outcome.Timeout => "timeout",
        Outcome.QueueFull => "queue_full",
        Outcome.DeadlineUnreachable => "deadline_unreachable",
        Outcome.Error => "error",
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, null),
    };

    /// <summary>The outcome of a request refused for <paramref name="kind"/>.</summary>
    public static Outcome Of(Protocol.ErrorKind kind) => kind switch
    {
        Protocol.ErrorKind.NotFound => Outcome.NotFound,
        Protocol.ErrorKind.TooLarge => Outcome.TooLarge,
        _ => Outcome.BadRequest,
    };
}
