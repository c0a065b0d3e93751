using System.Text.Json;
using System.Text.Json.Nodes;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Experiments.Manifests;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Planning;

/// <summary>`adaptive plan` on manifests, and its answer to bad input: exit 2 and one line naming the field.</summary>
public sealed class PlanCommandTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("adaptive-plan-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    static JsonNode BaseProblem() =>
        JsonNode.Parse(File.ReadAllText(RepoPaths.Of("tests", "Planning", "Conformance", "resnet-single.json")))!;

    static InferencePipeline VideoSample() =>
        ManifestReader.Parse(File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml")));

    string Write(string name, string text)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    static void AssertRejected(AdaptiveCli.Result run, string field)
    {
        Assert.Equal(2, run.ExitCode);
        Assert.Equal("", run.Stdout);
        string line = Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(field, line);
        Assert.DoesNotContain("Exception", line);
    }

    public static TheoryData<string, string> BadProblems() => new()
    {
        { "missing-slo", "sloMs: is required" },
        { "negative-throughput", "stages[0].variants[2].hardware[0].profile[1].throughput: must be greater than 0" },
        { "zero-throughput", "stages[0].variants[2].hardware[0].profile[1].throughput: must be greater than 0" },
        { "empty-variants", "stages[0].variants: must not be empty" },
        { "unknown-hardware-in-current", "current[0].hardware: unknown hardware class 'tpu'" },
        { "unknown-hardware-in-limits", "hardwareLimits.tpu: unknown hardware class 'tpu'" },
        { "batch-without-profile", "stages[0].batchSizes[4]: batch size 16 has no profile" },
        { "unknown-mode", "stages[0].mode: must be one of single, mixed, got 'both'" },
        { "string-for-number", "arrivalRate: must be a number, got \"fast\"" },
    };

    [Theory]
    [MemberData(nameof(BadProblems))]
    public void BadProblemIsRejectedNamingTheField(string mistake, string message)
    {
        var p = BaseProblem();
        var stage = p["stages"]![0]!;
        switch (mistake)
        {
            case "missing-slo": p.AsObject().Remove("sloMs"); break;
            case "negative-throughput": stage["variants"]![2]!["hardware"]![0]!["profile"]![1]!["throughput"] = -3.5; break;
            case "zero-throughput": stage["variants"]![2]!["hardware"]![0]!["profile"]![1]!["throughput"] = 0; break;
            case "empty-variants": stage["variants"] = new JsonArray(); break;
            case "unknown-hardware-in-current":
                p["current"] = JsonNode.Parse("""[{"stage":"classify","variant":"resnet18","hardware":"tpu","replicas":1,"batch":1}]""");
                break;
            case "unknown-hardware-in-limits": p["hardwareLimits"] = JsonNode.Parse("""{"tpu": 2}"""); break;
            case "batch-without-profile": stage["batchSizes"]!.AsArray().Add(16); break;
            case "unknown-mode": stage["mode"] = "both"; break;
            case "string-for-number": p["arrivalRate"] = "fast"; break;
        }
        AssertRejected(AdaptiveCli.Run("plan", Write(mistake + ".json", p.ToJsonString())), message);
    }

    [Fact]
    public void UnparsableJsonIsRejected() =>
        AssertRejected(AdaptiveCli.Run("plan", Write("broken.json", "{\"name\": \"x\", \"stages\": [")), "not valid JSON");

    [Fact]
    public void MissingFileIsRejected() =>
        AssertRejected(AdaptiveCli.Run("plan", Path.Combine(dir, "absent.json")), "no such file");

    [Fact]
    public void ManifestIsPlannedLikeTheSameExchangeProblem()
    {
        // The video sample carries the profiles and weights of the video-2stage case: same load, same optimum,
        // in the case's latency model.
        string manifest = File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml"));
        Assert.Contains("\n  adaptation:\n", manifest);
        var run = AdaptiveCli.Run("plan", Write("video-batch-fill.yaml", manifest.Replace("\n  adaptation:\n", "\n  adaptation:\n    latencyModel: batch-fill\n")), "--rate", "25");
        Assert.Equal(0, run.ExitCode);
        var answer = JsonNode.Parse(run.Stdout)!;
        Assert.Equal("optimal", (string)answer["status"]!);
        Assert.Equal(1.0557, (double)answer["objective"]!, 4);
        Assert.Equal(["detect", "classify"], answer["stages"]!.AsArray().Select(s => (string)s!["name"]!));
    }

    public static TheoryData<string, string> BadManifests() => new()
    {
        { "unknown-hardware", "spec.stages[0].variants[1].profiles[0].hardwareClass: unknown hardware class 'tpu'" },
        { "negative-throughput", "spec.stages[1].variants[0].profiles[0].batches[2].throughputRps: must be greater than 0" },
        { "empty-variants", "spec.stages[1].variants: must not be empty" },
        { "batch-without-profile", "spec.stages[0].batchSizes[4]: batch size 16 has no profile" },
        { "no-stages", "spec.stages: must not be empty" },
        { "bad-mode", "spec.stages[0].mode: must be one of single, mixed, got 'both'" },
        { "zero-utilization", "spec.adaptation.targetUtilization: must be between 0.01 and 2, got 0" },
        { "utilization-beyond-half-the-load", "spec.adaptation.targetUtilization: must be between 0.01 and 2, got 2.5" },
        { "stabilization-beyond-history", "spec.adaptation.scaleDownStabilizationSeconds: must be at most spec.adaptation.metrics.historySeconds (600), the history it is read from; got 900" },
    };

    [Theory]
    [MemberData(nameof(BadManifests))]
    public void BadManifestIsRejectedNamingTheField(string mistake, string message)
    {
        var pipeline = VideoSample();
        var spec = pipeline.Spec;
        switch (mistake)
        {
            case "unknown-hardware": spec.Stages[0].Variants[1].Profiles[0].HardwareClass = "tpu"; break;
            case "negative-throughput": spec.Stages[1].Variants[0].Profiles[0].Batches[2].ThroughputRps = -1; break;
            case "empty-variants": spec.Stages[1].Variants.Clear(); break;
            case "batch-without-profile": spec.Stages[0].BatchSizes.Add(16); break;
            case "zero-utilization": spec.Adaptation.TargetUtilization = 0; break;
            case "utilization-beyond-half-the-load": spec.Adaptation.TargetUtilization = 2.5; break;
            case "stabilization-beyond-history": spec.Adaptation.ScaleDownStabilizationSeconds = 900; break;
            case "no-stages": spec.Stages.Clear(); break;
            case "bad-mode": spec.Stages[0].Mode = "both"; break;
        }
        // JSON is YAML: the manifest is written as JSON and read by the YAML reader like any manifest.
        string path = Write(mistake + ".yaml", JsonSerializer.Serialize(pipeline));
        AssertRejected(AdaptiveCli.Run("plan", path, "--rate", "20"), message);
    }

    [Fact]
    public void ManifestWithUnknownFieldIsRejectedWithItsLine()
    {
        string text = File.ReadAllText(RepoPaths.Of("samples", "video-pipeline.yaml")).Replace("  sloMs: 800", "  sloMs: 800\n  sloSeconds: 1");
        AssertRejected(AdaptiveCli.Run("plan", Write("typo.yaml", text), "--rate", "20"), "sloSeconds");
    }

    [Fact]
    public void UnparsableYamlIsRejected() =>
        AssertRejected(AdaptiveCli.Run("plan", Write("broken.yaml", "spec: [unclosed"), "--rate", "20"), "line 1");

    [Fact]
    public void ManifestNeedsARate() =>
        AssertRejected(AdaptiveCli.Run("plan", RepoPaths.Of("samples", "video-pipeline.yaml")), "--rate: is required");
}
