using System.Security.Cryptography;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Manifests;
using Adaptive.Experiments.Profiling;
using Adaptive.Experiments.Zoo;
using Adaptive.ModelServer.Backend;
using Adaptive.ModelServer.Protocol;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Zoo;

[Collection("serving")]
public sealed class ZooAndProfileTests(TestModels models) : IDisposable
{
    readonly string directory = Directory.CreateTempSubdirectory("adaptive-zoo-").FullName;

    /// <summary>torchvision's parameter counts; ours fold batch normalisation away, which removes ~0.1–0.3 %.</summary>
    [Theory]
    [InlineData(18, 11_689_512)]
    [InlineData(34, 21_797_672)]
    [InlineData(50, 25_557_032)]
    [InlineData(101, 44_549_160)]
    [InlineData(152, 60_192_808)]
    public void Architectures_have_the_published_parameter_counts(int depth, long torchvision)
    {
        var (_, parameters) = ResNet.Create(ResNet.Find(depth), 32, seed: 1);
        Assert.InRange(parameters, torchvision * 0.99, torchvision);
    }

    /// <summary>For a model to be downloaded (an s3:// or https:// prefix), the YAML carries the profiled file's sha256, which validation requires for https://.</summary>
    [Fact]
    public void Profiles_of_models_to_download_carry_their_digest()
    {
        var profile = new ModelProfile("resnet18", models.ResNet18, 0.69758, 0.1, 1, "CPUExecutionProvider", [new BatchMeasurement(1, 5, 6, 150, 10)]);
        string digest = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(models.ResNet18)));
        Assert.Contains($"  sha256: {digest}\n", Adaptive.Experiments.Commands.ProfileCommand.Yaml([profile], "cpu", "https://models.example.com/zoo/").ReplaceLineEndings("\n"));
        Assert.DoesNotContain("sha256", Adaptive.Experiments.Commands.ProfileCommand.Yaml([profile], "cpu", "file:///models/"));
    }

    /// <summary>
    /// Copies of a model profiled at once, as replicas sharing a machine (<c>replay --live</c> measures 1, 2, 3, each
    /// behind its own server over REST): the calls of every copy count, and the throughput is per copy.
    /// </summary>
    [Theory]
    [InlineData(ProfileTransport.InProcess)]
    [InlineData(ProfileTransport.Rest)]
    public void Profiling_copies_at_once_counts_every_copy_and_reports_throughput_per_copy(ProfileTransport transport)
    {
        var duration = TimeSpan.FromSeconds(1.5);
        var profile = Profiler.Profile(models.ResNet18, new ProfileOptions([1], 1, Device.Cpu, duration) { Replicas = 3, Transport = transport }, _ => { });
        var measured = Assert.Single(profile.Batches);
        // Rows per second per copy times three copies over (at least) the duration is every call of batch 1.
        double oneCopysCalls = measured.ThroughputRps * duration.TotalSeconds;
        Assert.True(measured.Calls >= 2.5 * oneCopysCalls, $"{measured.Calls} calls at {measured.ThroughputRps} rps per copy over {duration.TotalSeconds} s");
        Assert.True(measured.P50Ms > 0 && measured.P99Ms >= measured.P50Ms);
    }

    /// <summary>
    /// Over REST and gRPC the profile is of a model server on loopback reached as a client reaches it: the batch time is the
    /// ONNX Runtime call the server reports (not the request's wait), and the throughput counts the rows answered.
    /// </summary>
    [Fact]
    public void Profiling_over_rest_and_grpc_measures_the_servers_batches()
    {
        var duration = TimeSpan.FromSeconds(1);
        var inProcess = Profiler.Profile(models.ResNet18, new ProfileOptions([2], 1, Device.Cpu, duration), _ => { }).Batches.Single();
        foreach (var transport in new[] { ProfileTransport.Rest, ProfileTransport.Grpc })
        {
            var served = Profiler.Profile(models.ResNet18, new ProfileOptions([2], 1, Device.Cpu, duration) { Transport = transport }, _ => { }).Batches.Single();
            Assert.True(served.Calls >= 2 && served.ThroughputRps > 0, $"{transport}: {served}");
            // Four requests outstanding for batches of two: a request waits about a batch before its own; the time reported is its batch's alone.
            Assert.True(served.P50Ms > 0 && served.P50Ms < 3 * inProcess.P50Ms + 5, $"{transport}: batch p50 {served.P50Ms} ms against {inProcess.P50Ms} ms in process");
        }
    }

    [Fact]
    public void Zoo_command_writes_loadable_deterministic_models_and_their_metadata()
    {
        var result = AdaptiveCli.Run("zoo", "--out", directory, "--resolution", "32", "--depths", "18", "152");
        Assert.Equal(0, result.ExitCode);
        var index = ZooIndex.Read(directory);
        Assert.Equal(["resnet18", "resnet152"], index.Models.Select(m => m.Name));
        Assert.Equal(78.312, index.Models[1].Top1Accuracy);

        // The deepest network still computes finite logits from random weights (no exploding residuals).
        using var resnet152 = OnnxModel.Load(Path.Combine(directory, "resnet152.onnx"), new RuntimeOptions(1, 1, Device.Cpu), _ => { });
        Assert.Equal("78.312", resnet152.Metadata["published_top1"]);
        var logits = (float[])resnet152.Run([new InferRequest(null, [new Tensor("input", TensorDataType.Fp32, [2, 3, 32, 32], models.Images(2, 1))], null)])[0][0].Data;
        Assert.Equal(2000, logits.Length);
        Assert.All(logits, l => Assert.True(float.IsFinite(l) && Math.Abs(l) < 1e4, $"logit {l}"));
        Assert.True(logits.Distinct().Count() > 1000, "logits should differ across classes and images");

        // Same seed, same bytes: the test fixture's model (seed 7) differs, a rewrite with seed 1 does not.
        string again = Directory.CreateTempSubdirectory("adaptive-zoo-").FullName;
        try
        {
            ModelZoo.Write(again, 32, [18], seed: 1);
            Assert.Equal(Hash(Path.Combine(directory, "resnet18.onnx")), Hash(Path.Combine(again, "resnet18.onnx")));
            Assert.NotEqual(Hash(models.ResNet18), Hash(Path.Combine(again, "resnet18.onnx")));
        }
        finally
        {
            Directory.Delete(again, recursive: true);
        }
    }

    [Theory]
    [InlineData("--resolution 16", "--resolution must be between 32 and 1024 pixels, got 16")]
    [InlineData("--depths 18 20", "--depths: no ResNet-20; the zoo has 18, 34, 50, 101, 152")]
    public void Zoo_command_refuses_bad_arguments(string arguments, string message)
    {
        var result = AdaptiveCli.Run(["zoo", "--out", directory, .. arguments.Split(' ')]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, result.Stderr);
    }

    /// <summary>
    /// The profiler's output pasted into a manifest is a valid InferencePipeline the planner can use, with
    /// the model's published accuracy and measured, sensible numbers.
    /// </summary>
    [Fact]
    public void Profile_writes_variants_ready_to_paste_into_a_manifest()
    {
        string output = Path.Combine(directory, "profiles.yaml");
        var result = AdaptiveCli.Run("profile", "--model", models.ResNet18, "--batches", "1", "2", "--seconds", "1.5", "--threads", "1", "--out", output);
        Assert.True(result.ExitCode == 0, result.Stderr);
        string variants = File.ReadAllText(output);
        string manifest = $"""
            apiVersion: adaptive.dev/v1alpha1
            kind: InferencePipeline
            metadata: {"{"}name: profiled{"}"}
            spec:
              sloMs: 500
              hardwareClasses:
                - {"{"}name: cpu, costPerReplica: 1{"}"}
              stages:
                - name: classify
                  maxReplicas: 4
                  batchSizes: [1, 2]
                  variants:
            {string.Join('\n', variants.Split('\n').Select(l => "        " + l))}
            """;
        var pipeline = ManifestReader.Parse(manifest);
        InferencePipelineValidator.Validate(pipeline);
        var variant = Assert.Single(pipeline.Spec.Stages[0].Variants);
        Assert.Equal("resnet18", variant.Name);
        Assert.Equal("file:///models/resnet18.onnx", variant.ModelUri);
        Assert.Equal(0.69758, variant.Accuracy);
        var profile = Assert.Single(variant.Profiles);
        Assert.Equal(1, profile.Threads);
        Assert.True(profile.LoadTimeSeconds > 0);
        Assert.Equal([1, 2], profile.Batches.Select(b => b.Batch));
        Assert.All(profile.Batches, b => Assert.True(b.LatencyMs > 0 && b.ThroughputRps > 0));
        // A replica cannot answer more rows per second than one batch at a time allows: calls run one after
        // another, so rows per second are at most batch / mean call time. Checked against the p50 the profiler
        // prints, with slack for a skewed distribution: a busy machine stretches calls and wall time alike, while
        // a few stalled calls make the p99 (latencyMs) several times the p50 (batch 2 once: 511 rps, p99 16.3 ms).
        foreach (var b in profile.Batches)
        {
            var line = System.Text.RegularExpressions.Regex.Match(result.Stderr, $@"batch {b.Batch}: p50 ([0-9.]+) ms");
            Assert.True(line.Success, result.Stderr);
            double p50 = double.Parse(line.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(p50 <= b.LatencyMs, $"batch {b.Batch}: p50 {p50} ms above the p99 {b.LatencyMs} ms");
            Assert.True(b.ThroughputRps <= 1.5 * b.Batch * 1000 / p50, $"batch {b.Batch}: {b.ThroughputRps} rps with calls of {p50} ms at p50");
        }

        var plan = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(5))).Plan(PlanningProblem.Single(PlanningProblemBuilder.Build(pipeline, 10, [])));
        Assert.Equal(PlanStatus.Optimal, plan.Status);
    }

    [Fact]
    public void Profile_refuses_a_missing_model_and_bad_batches()
    {
        var missing = AdaptiveCli.Run("profile", "--model", Path.Combine(directory, "none.onnx"));
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("none.onnx does not exist", missing.Stderr);
        var zero = AdaptiveCli.Run("profile", "--model", models.ResNet18, "--batches", "0");
        Assert.Equal(2, zero.ExitCode);
        Assert.Contains("--batches must be positive integers, got 0", zero.Stderr);
    }

    static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    public void Dispose() => Directory.Delete(directory, recursive: true);
}
