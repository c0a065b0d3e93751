using Prometheus;

namespace Adaptive.ModelServer.Metrics;

/// <summary>Why a request ended as it did; the <c>outcome</c> label of the request counter.</summary>
/// <summary>How a request ended. <see cref="BadRequest"/> is every client error (4xx but 429); <see cref="ClientClosed"/>
/// a client that went away before its answer; <see cref="BodiesFull"/> a 429 because the budget of bodies being read was spent.</summary>
public enum Outcome { Success, BadRequest, QueueFull, DeadlineUnreachable, Expired, ClientClosed, BodiesFull, Error }

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
        foreach (var outcome in Enum.GetValues<Outcome>()) Count(outcome, 0); // export every series from the start
    }

    public void Count(Outcome outcome, int requestCount = 1) =>
        requests.WithLabels(model, variant, LabelValue(outcome)).Inc(requestCount);

    public static string LabelValue(Outcome outcome) => outcome switch
    {
        Outcome.Success => "success",
        Outcome.BadRequest => "bad_request",
        Outcome.QueueFull => "queue_full",
        Outcome.DeadlineUnreachable => "deadline_unreachable",
        Outcome.Expired => "expired",
        Outcome.ClientClosed => "client_closed",
        Outcome.BodiesFull => "bodies_full",
        Outcome.Error => "error",
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, null),
    };
}
