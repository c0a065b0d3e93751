using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Zoo;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Hosting;
using Adaptive.ModelServer.Scheduling;
using Adaptive.ModelServer.Serving;
using Microsoft.ML.OnnxRuntime;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive bench server</c>: the model server over HTTP against raw <c>InferenceSession.Run</c> on the
/// same model and threads, in one process and one run. Raw Run, one batch after another, is the physical
/// limit of a replica; the server's ratio to it is what HTTP, JSON and batching cost.
/// Load generator: our own closed loop of HttpClient callers in the same process, with pre-serialised
/// bodies, in both encodings: JSON numbers, and the binary tensor data extension.
/// </summary>
public static class BenchServerCommand
{
    public static Command Create()
    {
        var model = new Option<FileInfo?>("--model") { Description = "ONNX model (default: the zoo's ResNet-18 at --resolution)" };
        var resolution = new Option<int>("--resolution") { Description = "Resolution of the generated ResNet-18", DefaultValueFactory = _ => ModelZoo.DefaultResolution };
        var batches = new Option<int[]>("--batches") { Description = "Max batch sizes to measure", DefaultValueFactory = _ => [1, 8], AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads", DefaultValueFactory = _ => Environment.ProcessorCount };
        var seconds = new Option<double>("--seconds") { Description = "Measuring time of each run, after a 1 s warm-up", DefaultValueFactory = _ => 10 };
        var output = new Option<DirectoryInfo>("--out") { Description = "Where the CSV and markdown table go", DefaultValueFactory = _ => new DirectoryInfo("bench-results/server") };
        var command = new Command("server", "Model server throughput and latency over HTTP against raw ONNX Runtime") { model, resolution, batches, threads, seconds, output };
        command.SetAction(parse => Run(parse.GetValue(model), parse.GetValue(resolution), parse.GetValue(batches)!, parse.GetValue(threads), parse.GetValue(seconds), parse.GetValue(output)!));
        return command;
    }

    /// <summary>A request body; <see cref="HeaderLength"/> is set for the binary tensor data extension.</summary>
    /// <param name="Refused">The same body naming an input the model lacks: the server reads and parses it,
    /// then answers 400 without inference, so its latency is the HTTP exchange and parsing alone.</param>
    sealed record Body(string Encoding, byte[] Bytes, int? HeaderLength, byte[] Refused);

    sealed record Row(int Batch, string Encoding, double RawRps, double ServerRps, double RawP50Ms, double ServerLowLoadP50Ms, double ExchangeP50Ms, double ServerSaturatedP50Ms, double ServerSaturatedP99Ms)
    {
        public double Ratio => ServerRps / RawRps;
        public double AddedP50Ms => ServerLowLoadP50Ms - RawP50Ms;
    }

    sealed record Measured(double RowsPerSecond, List<double> LatenciesMs)
    {
        public double P(double q) => Percentiles.Of(LatenciesMs, q);
    }

    static int Run(FileInfo? modelFile, int resolution, int[] batches, int threads, double seconds, DirectoryInfo output)
    {
        if (batches.Length == 0 || batches.Any(b => b < 1) || threads < 1 || !(seconds > 0))
        {
            Console.Error.WriteLine("adaptive bench server: --batches, --threads and --seconds must be positive");
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
                    status.Status($"batch {batch}: raw InferenceSession.Run");
                    using var rawBatch = new RawSession(path, batch, threads);
                    using var rawSingle = new RawSession(path, 1, threads);
                    var raw = rawBatch.RunFor(duration);
                    status.Status($"batch {batch}: server");
                    foreach (var (encoding, saturated, lowLoad, rawLowLoad, exchange) in MeasureServer(path, batch, threads, duration, rawSingle).GetAwaiter().GetResult())
                        rows.Add(new Row(batch, encoding, raw.RowsPerSecond, saturated.RowsPerSecond, rawLowLoad.P(0.5), lowLoad.P(0.5), exchange.P(0.5), saturated.P(0.5), saturated.P(0.99)));
                }
            });
            Report(rows, path, threads, seconds, output);
            return ExitCodes.Ok;
        }
        finally
        {
            Directory.Delete(temporary, recursive: true);
        }
    }

    /// <summary>One thread calling Run on a ready [batch, ...] input back to back: the most a replica can do.</summary>
    sealed class RawSession : IDisposable
    {
        readonly SessionOptions options;
        readonly InferenceSession session;
        readonly OrtValue input;
        readonly RunOptions runOptions = new();
        readonly string[] inputNames, outputNames;
        readonly int batch;

        public RawSession(string path, int batch, int threads)
        {
            this.batch = batch;
            options = OnnxModel.CreateSessionOptions(new RuntimeOptions(threads, 1, Device.Cpu));
            session = new InferenceSession(path, options);
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
            while (clock.Elapsed < duration)
            {
                long started = Stopwatch.GetTimestamp();
                using (session.Run(runOptions, inputNames, [input], outputNames)) { }
                latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            latencies.Sort();
            return new Measured(latencies.Count * batch / clock.Elapsed.TotalSeconds, latencies);
        }

        public void Dispose()
        {
            input.Dispose();
            runOptions.Dispose();
            session.Dispose();
            options.Dispose();
        }
    }

    /// <summary>
    /// The server with max batch <paramref name="batch"/>, per encoding: saturated by 2×batch callers; then
    /// one caller at a time, in rounds alternating with raw single-row Run, so that both low-load
    /// latencies see the same machine (on a shared machine, minutes apart, they drift by milliseconds).
    /// </summary>
    static async Task<List<(string Encoding, Measured Saturated, Measured LowLoad, Measured RawLowLoad, Measured Exchange)>> MeasureServer(string path, int batch, int threads, TimeSpan duration, RawSession rawSingle)
    {
        var http = new HttpOptions("127.0.0.1", 0, 64L << 20, TimeSpan.FromSeconds(30), TimeSpan.Zero, TimeSpan.FromSeconds(10));
        // No queue delay (Triton's default): under saturation the queue holds full batches anyway, and a lone request is not held back.
        var options = new ModelServerOptions(http, path, "bench", "bench", new BatchingOptions(batch, TimeSpan.Zero, 4096), new RuntimeOptions(threads, 1, Device.Cpu));
        var app = ModelServerApp.Build(options);
        await app.StartAsync();
        try
        {
            using var client = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 }) { BaseAddress = new Uri(app.Urls.First()) };
            const int rounds = 10;
            var results = new List<(string, Measured, Measured, Measured, Measured)>();
            foreach (var body in RequestBodies(client))
            {
                await Load(client, body, 2 * batch, TimeSpan.FromSeconds(1));
                var saturated = await Load(client, body, 2 * batch, duration);
                var lowLoad = new List<Measured>();
                var rawLowLoad = new List<Measured>();
                var before = await ServerTimes(client);
                for (int round = 0; round < rounds; round++)
                {
                    lowLoad.Add(await Load(client, body, 1, duration / rounds));
                    rawLowLoad.Add(rawSingle.RunFor(duration / rounds));
                }
                var after = await ServerTimes(client);
                Console.Error.WriteLine(FormattableString.Invariant(
                    $"{body.Encoding} batch {batch}, one caller: in the server, request {Mean(before.Request, after.Request):F2} ms, ONNX Runtime call {Mean(before.Inference, after.Inference):F2} ms (means)"));
                var exchange = await Load(client, body with { Bytes = body.Refused }, 1, duration / 4, HttpStatusCode.BadRequest);
                results.Add((body.Encoding, saturated, Pool(lowLoad), Pool(rawLowLoad), exchange));
            }
            return results;
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }

    /// <summary>Sum and count of the server's request and inference duration histograms, from its /metrics.</summary>
    static async Task<((double Sum, double Count) Request, (double Sum, double Count) Inference)> ServerTimes(HttpClient client)
    {
        var lines = (await client.GetStringAsync("/metrics")).Split('\n');
        double Value(string name) => double.Parse(lines.First(l => l.StartsWith(name + "{", StringComparison.Ordinal)).Split(' ')[^1], CultureInfo.InvariantCulture);
        return ((Value("adaptive_model_request_duration_seconds_sum"), Value("adaptive_model_request_duration_seconds_count")),
                (Value("adaptive_model_inference_duration_seconds_sum"), Value("adaptive_model_inference_duration_seconds_count")));
    }

    static double Mean((double Sum, double Count) before, (double Sum, double Count) after) =>
        1000 * (after.Sum - before.Sum) / (after.Count - before.Count);

    static Measured Pool(List<Measured> rounds) =>
        new(rounds.Average(r => r.RowsPerSecond), [.. rounds.SelectMany(r => r.LatenciesMs).Order()]);

    /// <summary>One row of input as JSON numbers, and the same as raw bytes after a JSON header (outputs binary too).</summary>
    static Body[] RequestBodies(HttpClient client)
    {
        using var metadata = JsonDocument.Parse(client.GetStringAsync("/v2/models/bench").GetAwaiter().GetResult());
        var input = metadata.RootElement.GetProperty("inputs")[0];
        long[] shape = [1, .. input.GetProperty("shape").EnumerateArray().Skip(1).Select(d => d.GetInt64())];
        var data = new float[shape.Aggregate(1L, (a, b) => a * b)];
        for (int i = 0; i < data.Length; i++) data[i] = i % 255 / 255f;
        string name = input.GetProperty("name").GetString()!;
        byte[] Json(string inputName) => V2Requests.Json(inputName, shape, data);
        byte[] Header(string inputName) => V2Requests.BinaryHeader(inputName, shape, data);
        byte[] Binary(string inputName) => V2Requests.Binary(inputName, shape, data);
        // The refused name has the same length, so the refused body has the same size and header length.
        string refused = new('x', name.Length);
        return [new Body("json", Json(name), null, Json(refused)), new Body("binary", Binary(name), Header(name).Length, Binary(refused))];
    }

    /// <summary>Closed loop: <paramref name="callers"/> callers each send one request after another for the duration.</summary>
    static async Task<Measured> Load(HttpClient client, Body body, int callers, TimeSpan duration, HttpStatusCode expected = HttpStatusCode.OK)
    {
        var latencies = new List<double>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            var mine = new List<double>();
            while (clock.Elapsed < duration)
            {
                long started = Stopwatch.GetTimestamp();
                using var content = new ByteArrayContent(body.Bytes);
                content.Headers.ContentType = new(body.HeaderLength is null ? "application/json" : "application/octet-stream");
                if (body.HeaderLength is { } length) content.Headers.Add("Inference-Header-Content-Length", length.ToString(CultureInfo.InvariantCulture));
                using var response = await client.PostAsync("/v2/models/bench/infer", content);
                await response.Content.ReadAsByteArrayAsync();
                if (response.StatusCode != expected) throw new InvalidOperationException($"the server answered {(int)response.StatusCode}, expected {(int)expected}");
                mine.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            }
            lock (latencies) latencies.AddRange(mine);
        })));
        double elapsed = clock.Elapsed.TotalSeconds;
        latencies.Sort();
        return new Measured(latencies.Count / elapsed, latencies);
    }

    static void Report(List<Row> rows, string model, int threads, double seconds, DirectoryInfo output)
    {
        var table = new Table().AddColumns("max batch", "encoding", "raw rows/s", "server rows/s", "server/raw", "raw p50 ms (batch 1)", "server p50 ms (1 caller)", "added p50 ms", "HTTP + parse p50 ms", "server p50/p99 ms (saturated)");
        foreach (var r in rows)
            table.AddRow($"{r.Batch}", r.Encoding, $"{r.RawRps:F1}", $"{r.ServerRps:F1}", $"{r.Ratio:P1}", $"{r.RawP50Ms:F2}", $"{r.ServerLowLoadP50Ms:F2}", $"{r.AddedP50Ms:F2}", $"{r.ExchangeP50Ms:F2}", $"{r.ServerSaturatedP50Ms:F1} / {r.ServerSaturatedP99Ms:F1}");
        AnsiConsole.Write(table);

        output.Create();
        var csv = new StringBuilder("max_batch,encoding,raw_rows_per_s,server_rows_per_s,ratio,raw_p50_ms,server_low_load_p50_ms,added_p50_ms,http_and_parse_p50_ms,server_saturated_p50_ms,server_saturated_p99_ms\n");
        var markdown = new StringBuilder(FormattableString.Invariant($"Model {Path.GetFileName(model)}, {threads} intra-op threads, {Environment.ProcessorCount} cores, {seconds} s per run.\n\n"));
        markdown.AppendLine("| max batch | encoding | raw rows/s | server rows/s | server/raw | raw p50 ms (batch 1) | server p50 ms (1 caller) | added p50 ms | HTTP + parse p50 ms (no inference) | server p50 / p99 ms (saturated) |");
        markdown.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            csv.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{r.Batch},{r.Encoding},{r.RawRps:F2},{r.ServerRps:F2},{r.Ratio:F4},{r.RawP50Ms:F3},{r.ServerLowLoadP50Ms:F3},{r.AddedP50Ms:F3},{r.ExchangeP50Ms:F3},{r.ServerSaturatedP50Ms:F3},{r.ServerSaturatedP99Ms:F3}"));
            markdown.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Batch} | {r.Encoding} | {r.RawRps:F1} | {r.ServerRps:F1} | {r.Ratio * 100:F1} % | {r.RawP50Ms:F2} | {r.ServerLowLoadP50Ms:F2} | {r.AddedP50Ms:F2} | {r.ExchangeP50Ms:F2} | {r.ServerSaturatedP50Ms:F1} / {r.ServerSaturatedP99Ms:F1} |"));
        }
        File.WriteAllText(Path.Combine(output.FullName, "server.csv"), csv.ToString());
        File.WriteAllText(Path.Combine(output.FullName, "server.md"), markdown.ToString());
        AnsiConsole.MarkupLineInterpolated($"Wrote {Path.Combine(output.FullName, "server.csv")} and server.md");
    }
}
