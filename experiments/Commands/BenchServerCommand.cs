using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Zoo;
using Adaptive.ModelServer.Backend;
using Grpc.Net.Client;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Scheduling;
using Adaptive.ModelServer.Serving;
using Microsoft.ML.OnnxRuntime;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive bench server</c>: the model server over REST and gRPC against raw <c>InferenceSession.Run</c> on the
/// same model and threads, in one process and one run. Raw Run, one batch after another, is the physical
/// limit of a replica; the server's ratio to it is what the transport, its encoding and batching cost.
/// Load generator: our own closed loop of callers in the same process, with pre-serialised requests: over
/// REST as JSON numbers and in the binary tensor data extension, over gRPC in raw_input_contents.
/// </summary>
public static class BenchServerCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo?>("--model") { Description = "ONNX model (default: the zoo's ResNet-18 at --resolution)" };
        var resolution = new Option<int>("--resolution") { Description = "Resolution of the generated ResNet-18", DefaultValueFactory = _ => ModelZoo.DefaultResolution };
        var batches = new Option<int[]>("--batches") { Description = "Max batch sizes to measure", DefaultValueFactory = _ => [1, 8], AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var seconds = new Option<double>("--seconds") { Description = "Measuring time at saturation, after a 1 s warm-up; low load takes twice as long", DefaultValueFactory = _ => 10 };
        var idle = new Option<double>("--idle-ms") { Description = "At low load, sleep this long before each measurement, as a replica idles between requests (0: each follows the one before)", DefaultValueFactory = _ => 0 };
        var pin = new Option<bool>("--pin-threads") { Description = "Serve with each intra-op thread on a CPU of its own (adaptive-server serve --pin-threads); raw Run is pinned alike" };
        var transports = new Option<string[]>("--transport") { Description = "rest (JSON and binary bodies), grpc (raw_input_contents), or both", DefaultValueFactory = _ => ["rest", "grpc"], AllowMultipleArgumentsPerToken = true };
        var output = new Option<DirectoryInfo>("--out") { Description = "Where the CSV and markdown table go", DefaultValueFactory = _ => new DirectoryInfo("bench-results/server") };
        var command = new Command("server", "Model server throughput and latency over REST and gRPC against raw ONNX Runtime") { model, resolution, batches, threads, seconds, idle, pin, transports, output };
        command.SetAction(parse => Run(parse.GetValue(model), parse.GetValue(resolution), parse.GetValue(batches)!, parse.GetValue(threads), parse.GetValue(seconds), parse.GetValue(idle), parse.GetValue(pin),
            parse.GetValue(transports)!, parse.GetValue(output)!));
        return command;
    }


    /// <param name="OverheadP50Ms">Per request at low load, the latency less the server's own ONNX Runtime call for it.</param>
    /// <param name="ExchangeP50Ms">At low load, a request the server reads and parses, then refuses before inference.</param>
    /// <param name="BareTcpP50Ms">At low load, the same bytes both ways over a bare TCP connection: no HTTP, no server.</param>
    /// <param name="BareHttpP50Ms">At low load, the same bytes both ways over the transport's HTTP version to an endpoint that only reads and answers.</param>
    sealed record Row(int Batch, string Encoding, double RawRps, double ServerRps, double RawP50Ms, double RawP99Ms, double ServerLowLoadP50Ms, double ServerLowLoadP99Ms, double OverheadP50Ms, double ExchangeP50Ms, double BareTcpP50Ms, double BareHttpP50Ms, double ServerSaturatedP50Ms, double ServerSaturatedP99Ms)
    {
        public double Ratio => ServerRps / RawRps;
        public double AddedP50Ms => ServerLowLoadP50Ms - RawP50Ms;
    }

    /// <param name="Seconds">How long the measurement ran.</param>
    sealed record Measured(double Rows, double Seconds, List<double> LatenciesMs)
    {
        public double RowsPerSecond => Rows / Seconds;
        public double P(double q) => Percentiles.Of(LatenciesMs, q);

        public static Measured Combine(IReadOnlyList<Measured> parts) =>
            new(parts.Sum(p => p.Rows), parts.Sum(p => p.Seconds), [.. parts.SelectMany(p => p.LatenciesMs).Order()]);
    }

    static int Run(FileInfo? modelFile, int resolution, int[] batches, int threads, double seconds, double idleMs, bool pinThreads, string[] transports, DirectoryInfo output)
    {
        if (transports.Length == 0 || transports.Any(t => t is not ("rest" or "grpc")))
        {
            Console.Error.WriteLine($"adaptive bench server: --transport takes rest, grpc or both, got '{string.Join(" ", transports)}'");
            return ExitCodes.InvalidInput;
        }
        if (batches.Length == 0 || batches.Any(b => b < 1) || threads < 1 || !(seconds > 0))
        {
            Console.Error.WriteLine("adaptive bench server: --batches, --threads and --seconds must be positive");
            return ExitCodes.InvalidInput;
        }
        if (!(idleMs >= 0))
        {
            Console.Error.WriteLine($"adaptive bench server: --idle-ms must not be negative, got {idleMs}");
            return ExitCodes.InvalidInput;
        }
        if (modelFile is { Exists: false })
        {
            Console.Error.WriteLine($"adaptive bench server: --model: {modelFile} does not exist");
            return ExitCodes.InvalidInput;
        }
        Environment.SetEnvironmentVariable("Logging__LogLevel__Default", "Warning");
        string temporary = Directory.CreateTempSubdirectory("adaptive-bench-").FullName;
        try
        {
            string path = modelFile?.FullName ?? Path.Combine(temporary, ModelZoo.Write(temporary, resolution, [18], ModelZoo.DefaultSeed).Models[0].File);
            var duration = TimeSpan.FromSeconds(seconds);
            var rows = new List<Row>();
            AnsiConsole.Status().Start("measuring", status =>
            {
                foreach (int batch in batches)
                {
                    status.Status($"batch {batch}");
                    var runtime = new RuntimeOptions(threads, 1, Device.Cpu, pinThreads);
                    using var model = OnnxModel.Load(path, runtime, warning => Console.Error.WriteLine(warning));
                    foreach (var m in MeasureServer(model, path, batch, runtime, duration, TimeSpan.FromMilliseconds(idleMs), transports).GetAwaiter().GetResult())
                    {
                        var low = m.LowLoad;
                        rows.Add(new Row(batch, m.Encoding, m.Raw.RowsPerSecond, m.Saturated.RowsPerSecond, Percentiles.Of(low.RawMs, 0.5), Percentiles.Of(low.RawMs, 0.99), low.Server.P(0.5), low.Server.P(0.99), Percentiles.Of(low.OverheadMs, 0.5),
                            Percentiles.Of(low.ExchangeMs, 0.5), Percentiles.Of(low.BareTcpMs, 0.5), Percentiles.Of(low.BareHttpMs, 0.5), m.Saturated.P(0.5), m.Saturated.P(0.99)));
                    }
                }
            });
            Report(rows, path, threads, seconds, idleMs, pinThreads, output);
            return ExitCodes.Ok;
        }
        finally
        {
            Directory.Delete(temporary, recursive: true);
        }
    }

    /// <summary>
    /// One thread calling <c>InferenceSession.Run</c> on a ready [batch, ...] input back to back: the most a
    /// replica can do. It runs on the server's own session: two sessions of the same model, loaded with the
    /// same settings, can differ by a millisecond at p50 for as long as they live.
    /// </summary>
    sealed class RawSession : IDisposable
    {
        readonly InferenceSession session;
        readonly OnnxModel model;
        readonly OrtValue input;
        readonly RunOptions runOptions = new();
        readonly string[] inputNames, outputNames;
        readonly int batch;

        public RawSession(OnnxModel model, int batch)
        {
            this.batch = batch;
            session = model.Session;
            this.model = model;
            var (name, metadata) = session.InputMetadata.Single();
            long[] shape = [batch, .. metadata.Dimensions.Skip(1).Select(d => (long)d)];
            var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < data.Length; i++) data[i] = i % 255 / 255f;
            input = OrtValue.CreateTensorValueFromMemory(data, shape);
            inputNames = [name];
            outputNames = [.. session.OutputMetadata.Keys];
            RunFor(TimeSpan.FromSeconds(1)); // warm-up
        }

        public Measured RunFor(TimeSpan duration)
        {
            var latencies = new List<double>();
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < duration) latencies.Add(RunOnce());
            latencies.Sort();
            return new Measured(latencies.Count * batch, clock.Elapsed.TotalSeconds, latencies);
        }

        public double RunOnce()
        {
            long started = Stopwatch.GetTimestamp();
            using (model.OnPinnedCpu(() => session.Run(runOptions, inputNames, [input], outputNames))) { }
            return Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        }

        public void Dispose()
        {
            input.Dispose();
            runOptions.Dispose();
        }
    }

    /// <summary>
    /// The server with max batch <paramref name="batch"/>, per encoding: saturated by 2×batch callers, in
    /// rounds alternating with raw Run of full batches; then one caller (<see cref="LowLoad"/>).
    /// </summary>
    static async Task<List<ServerMeasurement>> MeasureServer(OnnxModel model, string path, int batch, RuntimeOptions runtime, TimeSpan duration, TimeSpan idle, string[] transports)
    {
        using var single = new RawSession(model, 1);
        using var full = new RawSession(model, batch);
        var http = new HttpOptions("127.0.0.1", 0, 64L << 20, TimeSpan.FromSeconds(30), TimeSpan.Zero, TimeSpan.FromSeconds(10), GrpcPort: 0);
        // No queue delay (Triton's default): under saturation the queue holds full batches anyway, and a lone request is not held back.
        var options = new ModelServerOptions(http, path, "bench", "bench", new BatchingOptions(batch, TimeSpan.Zero, 4096), runtime);
        var app = ModelServerApp.Build(options, model);
        await app.StartAsync();
        try
        {
            using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 }) { BaseAddress = new Uri(app.Urls.First()) };
            using var channel = GrpcChannel.ForAddress(app.Urls.Skip(1).Single(), new GrpcChannelOptions { MaxReceiveMessageSize = 64 << 20, MaxSendMessageSize = 64 << 20 });
            var results = new List<ServerMeasurement>();
            foreach (var caller in InferenceCallers.For(client, channel.CreateCallInvoker(), "bench", transports))
            {
                await Load(caller, 2 * batch, TimeSpan.FromSeconds(1));
                var (raw, saturated) = await Saturation(caller, full, 2 * batch, duration);
                LowLoadMeasurement lowLoad;
                // On as many CPUs as ONNX Runtime has threads, as a pod with that many exclusive CPUs runs:
                // with one thread, each Run executes on one CPU, and the CPUs of a VM need not be equally
                // fast (ResNet-18 took 19.3 ms on one of ours and 20.6 ms on the other), so the server's Run
                // and raw Run would be compared across CPUs.
                using (ThreadAffinity.PinTo(runtime.IntraOpThreads))
                    lowLoad = await LowLoad(caller, single, 2 * duration, idle);
                results.Add(new ServerMeasurement(caller.Encoding, raw, saturated, lowLoad));
            }
            return results;
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    sealed record ServerMeasurement(string Encoding, Measured Raw, Measured Saturated, LowLoadMeasurement LowLoad);

    /// <summary>
    /// Raw Run of full batches and the saturated server, in 5 rounds each, alternating, so that both see the
    /// same machine: measured one after the other, on a shared machine, their ratio drifted by up to 14 %.
    /// </summary>
    static async Task<(Measured Raw, Measured Server)> Saturation(IInferenceCaller caller, RawSession raw, int callers, TimeSpan duration)
    {
        const int Rounds = 5;
        var rawRounds = new List<Measured>();
        var serverRounds = new List<Measured>();
        for (int round = 0; round < Rounds; round++)
        {
            rawRounds.Add(raw.RunFor(duration / Rounds));
            serverRounds.Add(await Load(caller, callers, duration / Rounds));
        }
        return (Measured.Combine(rawRounds), Measured.Combine(serverRounds));
    }

    /// <param name="OverheadMs">Per request, the latency less the server's own ONNX Runtime call for it; sorted.</param>
    /// <param name="ExchangeMs">The refused body: HTTP, reading and parsing, no inference; sorted.</param>
    /// <param name="BareTcpMs">The request's and the answer's bytes over a bare TCP connection; sorted.</param>
    /// <param name="BareHttpMs">The same bytes over the transport's HTTP version, to an endpoint that only reads and answers; sorted.</param>
    /// <param name="RawMs">Raw single-row Run on the server's session; sorted.</param>
    sealed record LowLoadMeasurement(Measured Server, List<double> OverheadMs, List<double> ExchangeMs, List<double> BareTcpMs, List<double> BareHttpMs, List<double> RawMs);

    /// <summary>
    /// Low load: one caller, one request at a time, each after a raw single-row Run on the same session, so
    /// that it finds the server's threads idle and the caches holding the model, as at low load, and so that
    /// server and raw Run see the same machine at the same moment (on a shared machine the speed of a Run
    /// drifts by a millisecond within seconds). In turn: a request the server serves; the same body refused
    /// after parsing; the same bytes over a bare TCP connection, the floor that loopback and waking idle
    /// threads set on this machine; the same bytes over the transport's HTTP version to an endpoint that only
    /// reads and answers, the floor of the protocol and .NET's HTTP stack. Per served request it also keeps
    /// the latency less the server's own Run for it, which no drift touches. With <paramref name="idle"/>,
    /// each of these waits that long first, as a replica idles between requests.
    /// </summary>
    static async Task<LowLoadMeasurement> LowLoad(IInferenceCaller caller, RawSession raw, TimeSpan duration, TimeSpan idle)
    {
        // A blocking sleep, not Task.Delay, whose timer would wake a pool thread just before the request.
        void Idle()
        {
            if (idle > TimeSpan.Zero) Thread.Sleep(idle);
        }
        var server = new List<double>();
        var overhead = new List<double>();
        var exchange = new List<double>();
        var bare = new List<double>();
        var bareHttp = new List<double>();
        var direct = new List<double>();
        var serving = TimeSpan.Zero;
        int answerBytes = (await caller.Send(refused: false)).AnswerBytes;
        using var tcp = new BareTcpExchange(caller.RequestBytes, answerBytes);
        await using var http = await BareHttpExchange.Start(caller.Protocol, caller.RequestBytes, answerBytes);
        await http.RunOnce(); // the connection
        direct.Add(raw.RunOnce());
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            Idle();
            long started = Stopwatch.GetTimestamp();
            var served = await caller.Send(refused: false);
            serving += Stopwatch.GetElapsedTime(started);
            server.Add(served.Latency);
            overhead.Add(served.Overhead ?? throw new InvalidOperationException("the server's answer has no Server-Timing infer duration"));
            Idle();
            direct.Add(raw.RunOnce());
            Idle();
            exchange.Add((await caller.Send(refused: true)).Latency);
            Idle();
            direct.Add(raw.RunOnce());
            Idle();
            bare.Add(tcp.RunOnce());
            Idle();
            direct.Add(raw.RunOnce());
            Idle();
            bareHttp.Add(await http.RunOnce());
            Idle();
            direct.Add(raw.RunOnce());
        }
        return new LowLoadMeasurement(new Measured(server.Count, serving.TotalSeconds, [.. server.Order()]), [.. overhead.Order()], [.. exchange.Order()], [.. bare.Order()], [.. bareHttp.Order()], [.. direct.Order()]);
    }

    /// <summary>Closed loop: <paramref name="callers"/> callers each send one request after another for the duration.</summary>
    static async Task<Measured> Load(IInferenceCaller caller, int callers, TimeSpan duration)
    {
        var latencies = new List<double>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            var mine = new List<double>();
            while (clock.Elapsed < duration) mine.Add((await caller.Send(refused: false)).Latency);
            lock (latencies) latencies.AddRange(mine);
        })));
        double elapsed = clock.Elapsed.TotalSeconds;
        latencies.Sort();
        return new Measured(latencies.Count, elapsed, latencies);
    }

    static void Report(List<Row> rows, string model, int threads, double seconds, double idleMs, bool pinThreads, DirectoryInfo output)
    {
        var table = new Table().AddColumns("max batch", "encoding", "raw rows/s", "server rows/s", "server/raw", "raw p50/p99 ms (batch 1)", "server p50/p99 ms (1 caller)", "added p50 ms", "overhead p50 ms", "exchange + parse p50 ms", "bare TCP p50 ms", "bare HTTP p50 ms", "server p50/p99 ms (saturated)");
        foreach (var r in rows)
            table.AddRow($"{r.Batch}", r.Encoding, $"{r.RawRps:F1}", $"{r.ServerRps:F1}", $"{r.Ratio:P1}", $"{r.RawP50Ms:F2} / {r.RawP99Ms:F1}", $"{r.ServerLowLoadP50Ms:F2} / {r.ServerLowLoadP99Ms:F1}", $"{r.AddedP50Ms:F2}", $"{r.OverheadP50Ms:F2}", $"{r.ExchangeP50Ms:F2}", $"{r.BareTcpP50Ms:F2}", $"{r.BareHttpP50Ms:F2}", $"{r.ServerSaturatedP50Ms:F1} / {r.ServerSaturatedP99Ms:F1}");
        AnsiConsole.Write(table);

        output.Create();
        var csv = new StringBuilder("max_batch,encoding,raw_rows_per_s,server_rows_per_s,ratio,raw_p50_ms,raw_p99_ms,server_low_load_p50_ms,server_low_load_p99_ms,added_p50_ms,overhead_p50_ms,exchange_and_parse_p50_ms,bare_tcp_p50_ms,bare_http_p50_ms,server_saturated_p50_ms,server_saturated_p99_ms\n");
        string idleNote = idleMs > 0 ? FormattableString.Invariant($", {idleMs} ms idle before each low-load measurement") : "";
        string pinned = ThreadAffinity.AllowedCpuCount() > threads ? FormattableString.Invariant($" on {threads} of them") : "";
        var markdown = new StringBuilder(FormattableString.Invariant($"Model {Path.GetFileName(model)}, {threads} intra-op threads, {Environment.ProcessorCount} cores, {seconds} s at saturation, {2 * seconds} s at low load{pinned}{idleNote}{(pinThreads ? ", intra-op threads pinned (--pin-threads)" : "")}.\n\n"));
        markdown.AppendLine("| max batch | encoding | raw rows/s | server rows/s | server/raw | raw p50 / p99 ms (batch 1) | server p50 / p99 ms (1 caller) | added p50 ms | overhead p50 ms (latency − its Run) | exchange + parse p50 ms (refused before inference) | bare TCP p50 ms (same bytes, no HTTP) | bare HTTP p50 ms (same bytes, HTTP/1.1 for REST, HTTP/2 for gRPC, no server work) | server p50 / p99 ms (saturated) |");
        markdown.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            csv.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{r.Batch},{r.Encoding},{r.RawRps:F2},{r.ServerRps:F2},{r.Ratio:F4},{r.RawP50Ms:F3},{r.RawP99Ms:F3},{r.ServerLowLoadP50Ms:F3},{r.ServerLowLoadP99Ms:F3},{r.AddedP50Ms:F3},{r.OverheadP50Ms:F3},{r.ExchangeP50Ms:F3},{r.BareTcpP50Ms:F3},{r.BareHttpP50Ms:F3},{r.ServerSaturatedP50Ms:F3},{r.ServerSaturatedP99Ms:F3}"));
            markdown.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Batch} | {r.Encoding} | {r.RawRps:F1} | {r.ServerRps:F1} | {r.Ratio * 100:F1} % | {r.RawP50Ms:F2} / {r.RawP99Ms:F1} | {r.ServerLowLoadP50Ms:F2} / {r.ServerLowLoadP99Ms:F1} | {r.AddedP50Ms:F2} | {r.OverheadP50Ms:F2} | {r.ExchangeP50Ms:F2} | {r.BareTcpP50Ms:F2} | {r.BareHttpP50Ms:F2} | {r.ServerSaturatedP50Ms:F1} / {r.ServerSaturatedP99Ms:F1} |"));
        }
        File.WriteAllText(Path.Combine(output.FullName, "server.csv"), csv.ToString());
        File.WriteAllText(Path.Combine(output.FullName, "server.md"), markdown.ToString());
        AnsiConsole.MarkupLineInterpolated($"Wrote {Path.Combine(output.FullName, "server.csv")} and server.md");
    }
}
