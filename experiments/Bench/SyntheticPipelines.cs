using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Bench;

/// <summary>
/// Pipelines of any size with realistic profiles, for the planner benchmark: in each stage variants get
/// more accurate and slower, batching raises throughput with diminishing returns, and a GPU class is
/// several times faster and dearer than the CPU class.
/// </summary>
public static class SyntheticPipelines
{
    public static readonly int[] BatchSizes = [1, 2, 4, 8, 16, 32, 64];

    public static PipelineProblem Build(int stages, int variants, int hardwareClasses, StageMode mode, int maxReplicas, Random random)
    {
        const double arrivalRate = 100;
        var stageProblems = Enumerable.Range(0, stages).Select(s => new StageProblem(
            Name: $"stage{s}",
            Mode: mode,
            MinReplicas: 1,
            MaxReplicas: maxReplicas,
            BatchSizes: BatchSizes,
            Variants: Enumerable.Range(0, variants).Select(v => Variant(v, variants, hardwareClasses, random)).ToList())).ToList();
        return new PipelineProblem(
            Name: $"synthetic-{stages}x{variants}",
            SloMs: 150.0 * stages,
            ArrivalRate: arrivalRate,
            AccuracyMethod: AccuracyMethod.Sum,
            Weights: new ObjectiveWeights(Accuracy: 1, Cost: 0.01, Batch: 0.001, Loading: 0),
            Budget: null,
            HardwareLimits: hardwareClasses > 1 ? new Dictionary<string, int> { ["gpu"] = stages * 2 } : new Dictionary<string, int>(),
            Stages: stageProblems,
            Current: []);
    }

    static VariantProblem Variant(int index, int count, int hardwareClasses, Random random)
    {
        double size = count == 1 ? 0 : (double)index / (count - 1); // 0..1: the largest variant is the most accurate and the slowest
        double accuracy = Math.Round(0.55 + 0.3 * size + 0.02 * random.NextDouble(), 4);
        double cpuLatency = 10 + 190 * size * size + 5 * random.NextDouble();
        var hardware = new List<HardwareProfile> { Profile("cpu", cpuLatency, cost: 1, random) };
        if (hardwareClasses > 1) hardware.Add(Profile("gpu", cpuLatency / (4 + 4 * random.NextDouble()), cost: 5, random));
        return new VariantProblem($"v{index}", accuracy, hardware);
    }

    static HardwareProfile Profile(string hardwareClass, double latencyAtOne, double cost, Random random)
    {
        // A batch of b takes latency·(0.35 + 0.65·b^0.9): fixed overhead amortised, work nearly linear.
        var points = BatchSizes.Select(b =>
        {
            double latency = latencyAtOne * (0.35 + 0.65 * Math.Pow(b, 0.9));
            return new ProfilePoint(b, Math.Round(latency, 3), Math.Round(1000.0 * b / latency, 3));
        }).ToList();
        return new HardwareProfile(hardwareClass, cost, LoadTimeS: Math.Round(2 + 8 * random.NextDouble(), 2), points);
    }
}
