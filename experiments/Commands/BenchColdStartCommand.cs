using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using Adaptive.Experiments.Bench;
using Adaptive.Experiments.Live;
using Adaptive.Experiments.Zoo;
using Adaptive.ModelServer.Protocol;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive bench cold-start</c>: what a fresh <c>adaptive-server</c> process's first requests cost, with its warm-up and
/// without (<c>--warm-up false</c>), the two taking turns in one run: the time from starting the process to its first ready
/// answer (as a replica gets traffic once its readiness probe passes), then one request at a time, the first, the next
/// nine, and the median of the hundred after them, the steady state the first ones are measured against. A replica added
/// in a surge meets its first requests at full load.
/// </summary>
public static class BenchColdStartCommand
{
    const int Following = 9, Steady = 100;

    /// <summary>One client for every server, as a router keeps one: a new client's own first request is slow too (this process's, not the server's, cost).</summary>
    static readonly HttpClient Client = new() { Timeout = TimeSpan.FromSeconds(30) };

    public static Command Create()
    {
        var model = new Option<FileInfo?>("--model") { Description = "ONNX model taking [batch, 3, resolution, resolution] (default: the zoo's ResNet-18 at --resolution)" };
        var resolution = new Option<int>("--resolution") { Description = "Input height and width", DefaultValueFactory = _ => 96 };
        var starts = new Option<int>("--starts") { Description = "Server processes started in each mode", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads of each server", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch") { Description = "Images in each request (the warm-up runs batch 1: a larger one shows what its first run at another shape costs)", DefaultValueFactory = _ => 1 };
        var output = new Option<DirectoryInfo>("--out") { Description = "Where the CSV and markdown table go", DefaultValueFactory = _ => new DirectoryInfo("bench-results/cold-start") };
        var command = new Command("cold-start", "A fresh model server's first requests, with its warm-up and without") { model, resolution, starts, threads, batch, output };
        command.SetAction(parse => Run(parse.GetValue(model), parse.GetValue(resolution), parse.GetValue(starts), parse.GetValue(threads), parse.GetValue(batch), parse.GetValue(output)!));
        return command;
    }

    /// <summary>One server's start: to its first ready answer, its first request, the mean of the next <see cref="Following"/>, the median of the <see cref="Steady"/> after them.</summary>
    sealed record Start(bool WarmUp, double ReadyMs, double FirstMs, double FollowingMs, double SteadyMs);

    static int Run(FileInfo? modelFile, int resolution, int starts, int threads, int batch, DirectoryInfo output)
    {
        if (starts < 1 || threads < 1 || batch < 1 || resolution < 32)
        {
            Console.Error.WriteLine("adaptive bench cold-start: --starts, --threads and --batch must be positive, --resolution at least 32");
            return ExitCodes.InvalidInput;
        }
        if (modelFile is { Exists: false })
        {
            Console.Error.WriteLine($"adaptive bench cold-start: --model: {modelFile} does not exist");
            return ExitCodes.InvalidInput;
        }
        string temporary = Directory.CreateTempSubdirectory("adaptive-bench-").FullName;
        try
        {
            string path = modelFile?.FullName ?? Path.Combine(temporary, ModelZoo.Write(temporary, resolution, [18], ModelZoo.DefaultSeed).Models[0].File);
            var measured = new List<Start>();
            AnsiConsole.Status().Start("measuring", status =>
            {
                // A first start of each mode, not counted, warms this process's own client: its first request would be slow too.
                for (int round = 0; round <= starts; round++)
                    foreach (bool warmUp in new[] { false, true })
                    {
                        status.Status($"start {round} of {starts}, warm-up {(warmUp ? "on" : "off")}");
                        var start = Measure(path, resolution, threads, batch, warmUp).GetAwaiter().GetResult();
                        if (round > 0) measured.Add(start);
                    }
            });
            Report(measured, path, threads, batch, output);
            return ExitCodes.Ok;
        }
        finally
        {
            Directory.Delete(temporary, recursive: true);
        }
    }

    static async Task<Start> Measure(string model, int resolution, int threads, int batch, bool warmUp)
    {
        long[] shape = [batch, 3, resolution, resolution];
        var data = new float[batch * 3 * resolution * resolution];
        for (int i = 0; i < data.Length; i++) data[i] = i % 255 / 255f;
        byte[] body = V2Requests.Binary(ResNet.InputName, shape, data);
        string headerLength = V2Requests.BinaryHeader(ResNet.InputName, shape, data).Length.ToString(CultureInfo.InvariantCulture);

        var clock = Stopwatch.StartNew();
        using var server = await ServerProcess.Start(["serve", "--model", model, "--name", "bench", "--host", "127.0.0.1", "--port", "0", "--grpc-port", "-1",
            "--intra-op-threads", threads.ToString(CultureInfo.InvariantCulture), "--max-batch", Math.Max(batch, 8).ToString(CultureInfo.InvariantCulture),
            "--warm-up", warmUp ? "true" : "false"]);
        // As a replica gets traffic: once its readiness probe has answered 200.
        while (true)
        {
            using (var ready = await Client.GetAsync(new Uri(server.Address!, "/v2/health/ready")))
                if (ready.IsSuccessStatusCode) break;
            if (clock.Elapsed > TimeSpan.FromSeconds(60)) throw new TimeoutException($"the server was not ready after 60 s:\n{server.Output}");
            await Task.Delay(10);
        }
        double readyMs = clock.Elapsed.TotalMilliseconds;
        var latencies = new List<double>();
        for (int i = 0; i < 1 + Following + Steady; i++)
        {
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            content.Headers.Add(InferRequestReader.HeaderLengthHeader, headerLength);
            long sent = Stopwatch.GetTimestamp();
            using var answer = await Client.PostAsync(new Uri(server.Address!, "/v2/models/bench/infer"), content);
            await answer.Content.ReadAsByteArrayAsync();
            if (!answer.IsSuccessStatusCode) throw new InvalidOperationException($"the server answered {(int)answer.StatusCode}:\n{server.Output}");
            latencies.Add(Stopwatch.GetElapsedTime(sent).TotalMilliseconds);
        }
        server.Terminate();
        return new Start(warmUp, readyMs, latencies[0], latencies.Skip(1).Take(Following).Average(), Percentiles.Of([.. latencies.Skip(1 + Following).Order()], 0.5));
    }

    static void Report(List<Start> measured, string model, int threads, int batch, DirectoryInfo output)
    {
        var table = new Table().AddColumns("warm-up", "starts", "to ready ms", "first request ms", $"next {Following} ms (mean)", $"steady ms (median of {Steady})", "first / steady");
        var markdown = new StringBuilder(FormattableString.Invariant(
            $"Model {Path.GetFileName(model)}, {threads} intra-op thread(s), {Environment.ProcessorCount} cores; each server started afresh and sent requests of {batch} image(s) once ready, one at a time (binary tensor data). Medians over the starts.\n\n"));
        markdown.AppendLine($"| warm-up | starts | to ready ms | first request ms | next {Following} ms (mean) | steady ms (median of {Steady}) | first / steady |");
        markdown.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
        var csv = new StringBuilder("warm_up,ready_ms,first_ms,following_mean_ms,steady_median_ms\n");
        foreach (var mode in measured.GroupBy(s => s.WarmUp).OrderBy(g => g.Key))
        {
            double Median(Func<Start, double> of) => Percentiles.Of([.. mode.Select(of).Order()], 0.5);
            string[] cells = [mode.Key ? "on" : "off", $"{mode.Count()}", $"{Median(s => s.ReadyMs):F0}", $"{Median(s => s.FirstMs):F1}", $"{Median(s => s.FollowingMs):F1}",
                $"{Median(s => s.SteadyMs):F1}", $"{Median(s => s.FirstMs / s.SteadyMs):F2}"];
            table.AddRow(cells);
            markdown.AppendLine("| " + string.Join(" | ", cells) + " |");
            foreach (var s in mode) csv.AppendLine(string.Create(CultureInfo.InvariantCulture, $"{mode.Key},{s.ReadyMs:F1},{s.FirstMs:F2},{s.FollowingMs:F2},{s.SteadyMs:F2}"));
        }
        AnsiConsole.Write(table);
        output.Create();
        File.WriteAllText(Path.Combine(output.FullName, "cold-start.csv"), csv.ToString());
        File.WriteAllText(Path.Combine(output.FullName, "cold-start.md"), markdown.ToString());
        AnsiConsole.MarkupLineInterpolated($"Wrote {Path.Combine(output.FullName, "cold-start.csv")} and cold-start.md");
    }
}
