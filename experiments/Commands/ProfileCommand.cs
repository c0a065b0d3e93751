using System.CommandLine;
using System.Globalization;
using System.Text;
using Adaptive.Experiments.Profiling;
using Adaptive.ModelServer.Backend;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive profile --model FILE...</c>: measures each model through the model server's batching path
/// and writes its variant entry (profiles included) in the InferencePipeline's format.
/// </summary>
public static class ProfileCommand
{
    public static Command Create()
    {
        var models = new Option<FileInfo[]>("--model") { Description = "ONNX model files to profile", Required = true, AllowMultipleArgumentsPerToken = true };
        var batches = new Option<int[]>("--batches") { Description = "Batch sizes to measure", DefaultValueFactory = _ => [1, 2, 4, 8], AllowMultipleArgumentsPerToken = true };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime intra-op threads per replica", DefaultValueFactory = _ => Environment.ProcessorCount };
        var seconds = new Option<double>("--seconds") { Description = "Measuring time per batch size, after warm-up", DefaultValueFactory = _ => 5 };
        var hardwareClass = new Option<string>("--hardware-class") { Description = "Hardware class the profiles are for", DefaultValueFactory = _ => "cpu" };
        var modelUri = new Option<string>("--model-uri-prefix") { Description = "Prefix of the modelUri written for each file", DefaultValueFactory = _ => "file:///models/" };
        var device = new Option<Device>("--device") { Description = "auto (CUDA when present, else CPU), cpu, or cuda (fail when CUDA cannot run the model)", DefaultValueFactory = _ => Device.Cpu };
        var output = new Option<FileInfo?>("--out") { Description = "Write the YAML here instead of standard output" };
        var transport = new Option<ProfileTransport>("--transport") { Description = "inprocess (through the server's batcher in this process), rest (binary tensors) or grpc (through a model server on loopback, as a client reaches it)", DefaultValueFactory = _ => ProfileTransport.InProcess };
        var command = new Command("profile", "Measure ONNX models' batch latency and throughput and write manifest-ready variant profiles")
        {
            models, batches, threads, seconds, hardwareClass, modelUri, device, output, transport,
        };
        command.SetAction(parse => Run(parse.GetValue(models)!, parse.GetValue(batches)!, parse.GetValue(threads), parse.GetValue(seconds),
            parse.GetValue(hardwareClass)!, parse.GetValue(modelUri)!, parse.GetValue(device), parse.GetValue(output), parse.GetValue(transport)));
        return command;
    }

    static int Run(FileInfo[] models, int[] batches, int threads, double seconds, string hardwareClass, string modelUriPrefix, Device device, FileInfo? output,
        ProfileTransport transport)
    {
        string? problem = models.FirstOrDefault(m => !m.Exists) is { } missing ? $"--model: {missing} does not exist"
            : batches.Length == 0 || batches.Any(b => b < 1) ? $"--batches must be positive integers, got {string.Join(" ", batches)}"
            : threads < 1 ? $"--threads must be at least 1, got {threads}"
            : !(seconds > 0) ? $"--seconds must be greater than 0, got {seconds}"
            : null;
        if (problem is not null) return Fail(problem);

        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        var options = new ProfileOptions([.. batches.Distinct().Order()], threads, device, TimeSpan.FromSeconds(seconds)) { Transport = transport };
        var profiles = new List<ModelProfile>();
        var table = new Table().AddColumns("model", "batch", "p50 ms", "p99 ms", "throughput rps", "calls");
        foreach (var model in models)
        {
            try
            {
                var profile = Profiler.Profile(model.FullName, options, warning => console.MarkupLineInterpolated($"[yellow]{warning}[/]"),
                    m => console.MarkupLineInterpolated($"{model.Name} batch {m.Batch}: p50 {m.P50Ms:F2} ms, p99 {m.P99Ms:F2} ms, {m.ThroughputRps:F1} rps"));
                profiles.Add(profile);
                foreach (var m in profile.Batches)
                    table.AddRow(profile.Name, $"{m.Batch}", $"{m.P50Ms:F2}", $"{m.P99Ms:F2}", $"{m.ThroughputRps:F1}", $"{m.Calls}");
            }
            catch (Exception e) when (e is InvalidDataException or DeviceUnavailableException)
            {
                return Fail(e.Message);
            }
        }
        console.Write(table);
        string yaml = Yaml(profiles, hardwareClass, modelUriPrefix);
        if (output is null) Console.Out.Write(yaml);
        else File.WriteAllText(output.FullName, yaml);
        return ExitCodes.Ok;
    }

    /// <summary>
    /// Variant entries for a stage's <c>variants:</c> list. <c>latencyMs</c> is the p99 of one batch: the
    /// planner budgets the SLO with it, so the conservative percentile is the one it should see.
    /// </summary>
    public static string Yaml(IEnumerable<ModelProfile> profiles, string hardwareClass, string modelUriPrefix)
    {
        var yaml = new StringBuilder();
        var first = profiles.FirstOrDefault();
        yaml.AppendLine(CultureInfo.InvariantCulture,
            $"# adaptive profile: {Environment.ProcessorCount} cores, {first?.ExecutionProvider}, {first?.Threads} intra-op threads; latencyMs = p99 of one batch");
        foreach (var p in profiles)
        {
            yaml.AppendLine(CultureInfo.InvariantCulture, $"- name: {p.Name}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"  modelUri: {modelUriPrefix}{Path.GetFileName(p.Path)}");
            // A download is checked against the digest of the file profiled (the variant's sha256).
            if (modelUriPrefix.StartsWith("https://", StringComparison.Ordinal) || modelUriPrefix.StartsWith("s3://", StringComparison.Ordinal))
                yaml.AppendLine(CultureInfo.InvariantCulture, $"  sha256: {Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(p.Path)))}");
            yaml.AppendLine(p.Accuracy is { } accuracy
                ? string.Create(CultureInfo.InvariantCulture, $"  accuracy: {accuracy}")
                : "  accuracy: 0  # unknown: the model has no published_top1 metadata; fill in its accuracy (0-1)");
            yaml.AppendLine("  profiles:");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"    - hardwareClass: {hardwareClass}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      loadTimeSeconds: {p.LoadTimeSeconds}");
            yaml.AppendLine(CultureInfo.InvariantCulture, $"      threads: {p.Threads}");
            yaml.AppendLine("      batches:");
            foreach (var b in p.Batches)
                yaml.AppendLine(CultureInfo.InvariantCulture, $"        - {{batch: {b.Batch}, latencyMs: {b.P99Ms}, throughputRps: {b.ThroughputRps}}}");
        }
        return yaml.ToString();
    }

    static int Fail(string message)
    {
        Console.Error.WriteLine($"adaptive profile: {message}");
        return ExitCodes.InvalidInput;
    }
}
