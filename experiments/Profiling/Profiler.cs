using System.Diagnostics;
using Adaptive.Experiments.Bench;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Metrics;
using Adaptive.ModelServer.Protocol;
using Adaptive.ModelServer.Scheduling;
using Adaptive.ModelServer.Serving;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;

namespace Adaptive.Experiments.Profiling;

/// <summary>One batch size of one model: the time of one batch (p50, p99) and the rows per second a replica sustains.</summary>
public sealed record BatchMeasurement(int Batch, double P50Ms, double P99Ms, double ThroughputRps, int Calls);

public sealed record ModelProfile(string Name, string Path, double? Accuracy, double LoadTimeSeconds, int Threads, string ExecutionProvider, IReadOnlyList<BatchMeasurement> Batches);

/// <summary>
/// How the profiler reaches the model: in this process through the model server's batcher and backend, or through a
/// model server's REST (binary tensors) or gRPC endpoint on loopback, as a client would: the throughput then includes
/// what the transport costs the replica.
/// </summary>
public enum ProfileTransport { InProcess, Rest, Grpc }

/// <param name="Duration">How long each batch size is measured, after a warm-up.</param>
public sealed record ProfileOptions(IReadOnlyList<int> Batches, int Threads, Device Device, TimeSpan Duration, int WarmupCalls = 3)
{
    public ProfileTransport Transport { get; init; } = ProfileTransport.InProcess;

    /// <summary>
    /// Copies of the model measured at once, each with its own session and batcher (over a transport, its own server), as
    /// replicas sharing one machine run; the latencies are over all of them and the throughput is per copy. 1: the model alone.
    /// </summary>
    public int Replicas { get; init; } = 1;
}

/// <summary>
/// Measures a model the way a replica serves it: through the model server's dynamic batcher and ONNX
/// Runtime backend, with enough single-row requests outstanding that every batch is full. The batch
/// latency is the backend call's duration; the throughput is rows answered per second of wall time.
/// Over a transport (<see cref="ProfileOptions.Transport"/>) the same, through a model server on loopback: the
/// batch latency is the ONNX Runtime call the server reports for each request (Server-Timing).
/// </summary>
public static class Profiler
{
    /// <summary>Metadata key under which the zoo records a model's published top-1 accuracy, in percent.</summary>
    const string AccuracyMetadataKey = "published_top1";

    public static ModelProfile Profile(string modelPath, ProfileOptions options, Action<string> warn, Action<BatchMeasurement>? measured = null)
    {
        var models = new List<OnnxModel>();
        try
        {
            for (int i = 0; i < options.Replicas; i++) models.Add(OnnxModel.Load(modelPath, new RuntimeOptions(options.Threads, 1, options.Device), warn));
            return Profile(modelPath, models, options, measured);
        }
        finally
        {
            foreach (var copy in models) copy.Dispose();
        }
    }

    static ModelProfile Profile(string modelPath, IReadOnlyList<OnnxModel> models, ProfileOptions options, Action<BatchMeasurement>? measured)
    {
        var model = models[0];
        var inputs = SampleInputs(model, modelPath);
        var results = new List<BatchMeasurement>();
        foreach (int batch in options.Batches)
        {
            var measurement = options.Transport == ProfileTransport.InProcess ? Measure(models, inputs, batch, options)
                : MeasureServed(models, modelPath, batch, options).GetAwaiter().GetResult();
            results.Add(measurement);
            measured?.Invoke(measurement);
        }
        double? accuracy = model.Metadata.TryGetValue(AccuracyMetadataKey, out var top1)
            && double.TryParse(top1, System.Globalization.CultureInfo.InvariantCulture, out double percent) ? Math.Round(percent / 100, 5) : null;
        return new ModelProfile(Path.GetFileNameWithoutExtension(modelPath), Path.GetFullPath(modelPath), accuracy,
            Math.Round(model.LoadTime.TotalSeconds, 3), options.Threads, model.ExecutionProvider, results);
    }

    /// <summary>One row of random data for each input; only the batch dimension may be dynamic.</summary>
    static IReadOnlyList<Tensor> SampleInputs(OnnxModel model, string path)
    {
        var random = new Random(0);
        var tensors = new List<Tensor>();
        foreach (var input in model.Inputs)
        {
            long[] shape = [.. input.Shape];
            if (shape.Length > 0 && shape[0] < 0) shape[0] = 1;
            if (shape.Skip(1).Any(d => d < 0))
                throw new InvalidDataException($"{path}: input '{input.Name}' has shape {Tensor.FormatShape(input.Shape)}; the profiler needs every dimension but the first fixed");
            if (!input.DataType.HasFixedSize())
                throw new InvalidDataException($"{path}: input '{input.Name}' is BYTES; the profiler makes random numbers, not strings, to run a model with");
            var data = input.DataType.NewArray(Tensor.ElementCount(shape));
            for (int i = 0; i < data.Length; i++) data.SetValue(Convert.ChangeType(random.NextDouble(), data.GetType().GetElementType()!, System.Globalization.CultureInfo.InvariantCulture), i);
            tensors.Add(new Tensor(input.Name, input.DataType, shape, data));
        }
        return tensors;
    }

    static BatchMeasurement Measure(IReadOnlyList<OnnxModel> models, IReadOnlyList<Tensor> inputs, int batch, ProfileOptions options)
    {
        var backends = models.Select(m => new TimedBackend(m)).ToList();
        var metrics = new ModelMetrics(Prometheus.Metrics.NewCustomRegistry(), "profile", "profile");
        // A long queue delay and twice the batch outstanding: the batcher always finds a full batch.
        var batchers = backends.Select(b => new DynamicBatcher(b, new BatchingOptions(batch, TimeSpan.FromSeconds(1), 4 * batch), metrics)).ToList();
        try
        {
            var request = new InferRequest(null, inputs, null);
            var timeout = TimeSpan.FromMinutes(5);

            RunClosedLoops(batchers, request, timeout, batch, () => backends.All(b => b.Calls.Count >= options.WarmupCalls));
            foreach (var backend in backends) lock (backend.Calls) backend.Calls.Clear();
            long started = Stopwatch.GetTimestamp();
            long rows = RunClosedLoops(batchers, request, timeout, batch, () => Stopwatch.GetElapsedTime(started) >= options.Duration && backends.All(b => b.Calls.Count >= 2));
            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;

            var full = backends.SelectMany(b => b.Calls).Where(c => c.Rows == batch).Select(c => c.Milliseconds).Order().ToList();
            return new BatchMeasurement(batch, Math.Round(Percentiles.Of(full, 0.50), 3), Math.Round(Percentiles.Of(full, 0.99), 3), Math.Round(rows / seconds / models.Count, 3), full.Count);
        }
        finally
        {
            foreach (var batcher in batchers) batcher.Dispose();
        }
    }

    /// <summary>
    /// Through a model server on loopback for each copy, all at once, each batcher getting 2×batch single-row requests at a
    /// time over the transport: the servers' and the callers' work shares the machine with the models', as a replica's does.
    /// </summary>
    static async Task<BatchMeasurement> MeasureServed(IReadOnlyList<OnnxModel> models, string path, int batch, ProfileOptions options)
    {
        var copies = new List<ServedCopy>();
        try
        {
            foreach (var model in models) copies.Add(await ServedCopy.Start(model, path, batch, options));
            await Task.WhenAll(copies.Select(c => Callers(c.Caller, 2 * batch, answered => answered >= options.WarmupCalls * batch)));
            long started = Stopwatch.GetTimestamp();
            var perCopy = await Task.WhenAll(copies.Select(c => Callers(c.Caller, 2 * batch, answered => Stopwatch.GetElapsedTime(started) >= options.Duration && answered >= 2 * batch)));
            double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var inferenceMs = perCopy.SelectMany(ms => ms).Order().ToList();
            return new BatchMeasurement(batch, Math.Round(Percentiles.Of(inferenceMs, 0.50), 3), Math.Round(Percentiles.Of(inferenceMs, 0.99), 3),
                Math.Round(inferenceMs.Count / seconds / copies.Count, 3), inferenceMs.Count / batch);
        }
        finally
        {
            foreach (var copy in copies) await copy.DisposeAsync();
        }
    }

    /// <summary>One model server on loopback and a caller of it over the profile's transport.</summary>
    sealed class ServedCopy(WebApplication app, HttpClient client, GrpcChannel channel) : IAsyncDisposable
    {
        public IInferenceCaller Caller { get; private set; } = null!;

        public static async Task<ServedCopy> Start(OnnxModel model, string path, int batch, ProfileOptions options)
        {
            // Its logs on standard error: standard output is the profile's YAML.
            var http = new HttpOptions("127.0.0.1", 0, 64L << 20, TimeSpan.FromMinutes(5), TimeSpan.Zero, TimeSpan.FromSeconds(10), GrpcPort: 0) { LogsToStandardError = true };
            // A long queue delay and twice the batch outstanding: the batcher always finds a full batch.
            // No warm-up of its own (the profile's calls warm it up): its lone requests would each wait out the 1 s queue delay.
            var server = new ModelServerOptions(http, path, "profile", "profile", new BatchingOptions(batch, TimeSpan.FromSeconds(1), 4 * batch),
                new RuntimeOptions(options.Threads, 1, options.Device), WarmUp: false);
            var app = ModelServerApp.Build(server, model);
            await app.StartAsync();
            var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 }) { BaseAddress = new Uri(app.Urls.First()) };
            var channel = GrpcChannel.ForAddress(app.Urls.Skip(1).Single(), new GrpcChannelOptions { MaxReceiveMessageSize = 64 << 20, MaxSendMessageSize = 64 << 20 });
            var copy = new ServedCopy(app, client, channel);
            try
            {
                string encoding = options.Transport == ProfileTransport.Rest ? "binary" : "grpc";
                copy.Caller = InferenceCallers.For(client, channel.CreateCallInvoker(), "profile",
                    [options.Transport == ProfileTransport.Rest ? "rest" : "grpc"]).Single(c => c.Encoding == encoding);
                return copy;
            }
            catch
            {
                await copy.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            client.Dispose();
            channel.Dispose();
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>
    /// <paramref name="callers"/> callers, each sending one single-row request after another until <paramref name="done"/> (given the
    /// requests answered so far); returns, per request, the ONNX Runtime call that served it, as the server reports it.
    /// </summary>
    static async Task<List<double>> Callers(IInferenceCaller caller, int callers, Func<long, bool> done)
    {
        long answered = 0;
        var inferenceMs = new List<double>();
        await Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            while (!done(Interlocked.Read(ref answered)))
            {
                var (latency, overhead, _) = await caller.Send(refused: false);
                Interlocked.Increment(ref answered);
                lock (inferenceMs) inferenceMs.Add(latency - overhead!.Value);
            }
        })));
        return inferenceMs;
    }

    /// <summary>Keeps 2×batch single-row requests outstanding at each batcher until <paramref name="done"/>; returns the rows answered.</summary>
    static long RunClosedLoops(IReadOnlyList<DynamicBatcher> batchers, InferRequest request, TimeSpan timeout, int batch, Func<bool> done)
    {
        long answered = 0;
        var clients = batchers.SelectMany(batcher => Enumerable.Range(0, 2 * batch).Select(_ => Task.Run(async () =>
        {
            while (!done())
            {
                await batcher.Submit(request, timeout);
                Interlocked.Increment(ref answered);
            }
        }))).ToArray();
        Task.WaitAll(clients);
        return answered;
    }

    sealed class TimedBackend(OnnxModel model) : IBatchBackend
    {
        public List<(long Rows, double Milliseconds)> Calls { get; } = [];

        public IReadOnlyList<IReadOnlyList<Tensor>> Run(IReadOnlyList<InferRequest> batch)
        {
            long started = Stopwatch.GetTimestamp();
            var outputs = model.Run(batch);
            lock (Calls) Calls.Add((batch.Sum(r => r.Rows), Stopwatch.GetElapsedTime(started).TotalMilliseconds));
            return outputs;
        }
    }
}
