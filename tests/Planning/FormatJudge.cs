using System.Text.Json.Nodes;
using Adaptive.Core.Queueing;

namespace Adaptive.Tests.Planning;

/// <summary>
/// Judges an answer by the rules of the exchange format (docs/planning-format.md, "Semantics"), reading the
/// problem and the answer as plain JSON. It shares no code with the planner on purpose: it is the independent
/// check. The one exception is the queueing latency model's formula (<see cref="BatchingStage"/>), which is
/// the model's definition; BatchingStageTests check it against the simulator.
/// </summary>
static class FormatJudge
{
    public sealed record Verdict(List<string> Violations, double Objective);

    /// <summary>Judges a whole answer: one pipeline, or several under the top-level hardware limits.</summary>
    public static Verdict Judge(JsonNode problem, JsonNode answer)
    {
        if (problem["pipelines"] is not JsonArray pipelines)
            return JudgePipeline(problem, answer["stages"]!.AsArray());

        var violations = new List<string>();
        double objective = 0;
        var answered = answer["pipelines"]!.AsArray();
        if (answered.Count != pipelines.Count) return new Verdict([$"{answered.Count} pipelines answered, {pipelines.Count} asked"], 0);
        var replicasByClass = new Dictionary<string, int>();
        for (int i = 0; i < pipelines.Count; i++)
        {
            var verdict = JudgePipeline(pipelines[i]!, answered[i]!["stages"]!.AsArray());
            violations.AddRange(verdict.Violations.Select(v => $"{pipelines[i]!["name"]}: {v}"));
            objective += verdict.Objective;
            foreach (var (hardware, n) in ReplicasByClass(answered[i]!["stages"]!.AsArray()))
                replicasByClass[hardware] = replicasByClass.GetValueOrDefault(hardware) + n;
        }
        CheckLimits(problem["hardwareLimits"], replicasByClass, violations);
        return new Verdict(violations, objective);
    }

    public static Verdict JudgePipeline(JsonNode p, JsonArray answerStages)
    {
        var violations = new List<string>();
        double lambda = (double)p["arrivalRate"]!;
        var stages = p["stages"]!.AsArray();
        if (answerStages.Count != stages.Count) return new Verdict([$"{answerStages.Count} stages answered, {stages.Count} asked"], 0);

        double totalLatency = 0, cost = 0;
        int batchTerm = 0;
        var stageAccuracies = new List<double>();
        double largestLoad = stages.SelectMany(s => s!["variants"]!.AsArray()).SelectMany(v => v!["hardware"]!.AsArray())
            .Max(h => (double)h!["loadTimeS"]!);
        double growingLoad = 0;
        for (int s = 0; s < stages.Count; s++)
        {
            var stage = stages[s]!;
            string name = (string)stage["name"]!;
            var allocations = answerStages[s]!["allocations"]!.AsArray();
            if ((string?)answerStages[s]!["name"] != name) violations.Add($"stage {s} answered as {answerStages[s]!["name"]}, expected {name}");
            bool single = (string)stage["mode"]! == "single";
            if (single && allocations.Count != 1) violations.Add($"{name}: single mode needs exactly one allocation, got {allocations.Count}");
            if (!single && allocations.Count < 1) violations.Add($"{name}: mixed mode needs at least one allocation");
            if (allocations.Select(a => ((string)a!["variant"]!, (string)a["hardware"]!)).Distinct().Count() != allocations.Count)
                violations.Add($"{name}: two allocations of one (variant, hardware)");

            double shares = 0, latency = 0, accuracy = 0;
            int replicas = 0, largestBatch = 0;
            foreach (var a in allocations)
            {
                string variantName = (string)a!["variant"]!, hardwareName = (string)a["hardware"]!;
                int n = (int)a["replicas"]!, b = (int)a["batch"]!;
                double share = (double)a["share"]!;
                var variant = stage["variants"]!.AsArray().FirstOrDefault(v => (string)v!["name"]! == variantName);
                var hardware = variant?["hardware"]!.AsArray().FirstOrDefault(h => (string)h!["class"]! == hardwareName);
                var point = hardware?["profile"]!.AsArray().FirstOrDefault(e => (int)e!["batch"]! == b);
                if (point == null || !stage["batchSizes"]!.AsArray().Any(x => (int)x! == b))
                {
                    violations.Add($"{name}: {variantName}/{hardwareName} at batch {b} is not allowed or not profiled");
                    continue;
                }
                if (n < 1) violations.Add($"{name}/{variantName}: {n} replicas");
                if (!(share > 0)) violations.Add($"{name}/{variantName}: share {share} is not positive");
                double throughput = (double)point["throughput"]!;
                if (share > n * throughput * (1 + 1e-9)) violations.Add($"{name}/{variantName}: share {share} over capacity {n * throughput}");
                double latencyMs = (double)point["latencyMs"]!;
                latency = Math.Max(latency, (string?)p["latencyModel"] == "queueing"
                    ? BatchingStage.P99Ms(share, n, b, ServiceTime.Fit(1000.0 * b / throughput, latencyMs), (double?)stage["maxQueueDelayMs"] ?? 0)
                    : latencyMs + 1000.0 * (b - 1) / share);
                accuracy += share / lambda * (double)variant!["accuracy"]!;
                cost += n * (double)hardware!["costPerReplica"]!;
                shares += share;
                replicas += n;
                largestBatch = Math.Max(largestBatch, b);
                if (n > RunningReplicas(p, name, variantName, hardwareName) || RunsAtOtherBatch(p, name, variantName, hardwareName, b)) growingLoad = Math.Max(growingLoad, (double)hardware["loadTimeS"]!);
            }
            if (Math.Abs(shares - lambda) > 1e-6 * lambda) violations.Add($"{name}: shares add up to {shares}, load is {lambda}");
            if (replicas > (int)stage["maxReplicas"]!) violations.Add($"{name}: {replicas} replicas over maxReplicas {stage["maxReplicas"]}");
            totalLatency += latency;
            stageAccuracies.Add(accuracy);
            batchTerm += largestBatch;
        }
        if (totalLatency > (double)p["sloMs"]! * (1 + 1e-9)) violations.Add($"latency {totalLatency} ms over the SLO {p["sloMs"]} ms");
        if (p["budget"] is JsonNode budget && cost > (double)budget * (1 + 1e-9)) violations.Add($"cost {cost} over the budget {budget}");
        CheckLimits(p["hardwareLimits"], ReplicasByClass(answerStages), violations);

        double pipelineAccuracy = (string)p["accuracyMethod"]! switch
        {
            "sum" => stageAccuracies.Sum(),
            "average" => stageAccuracies.Average(),
            _ => stageAccuracies.Aggregate(1.0, (x, a) => x * a),
        };
        bool hasCurrent = p["current"] is JsonArray { Count: > 0 };
        double loading = hasCurrent && largestLoad > 0 ? growingLoad / largestLoad : 0;
        var w = p["weights"]!;
        double objective = (double)w["accuracy"]! * pipelineAccuracy - (double)w["cost"]! * cost
                           - (double)w["batch"]! * batchTerm - (double)w["loading"]! * loading;
        return new Verdict(violations, objective);
    }

    static int RunningReplicas(JsonNode p, string stage, string variant, string hardware) =>
        p["current"] is JsonArray current
            ? current.Where(c => (string)c!["stage"]! == stage && (string)c["variant"]! == variant && (string)c["hardware"]! == hardware)
                .Sum(c => (int)c!["replicas"]!)
            : 0;

    static bool RunsAtOtherBatch(JsonNode p, string stage, string variant, string hardware, int batch) =>
        p["current"] is JsonArray current && current.Any(c => (string)c!["stage"]! == stage && (string)c["variant"]! == variant
            && (string)c["hardware"]! == hardware && (int)c["replicas"]! > 0 && (int)c["batch"]! != batch);

    static Dictionary<string, int> ReplicasByClass(JsonArray answerStages) =>
        answerStages.SelectMany(s => s!["allocations"]!.AsArray())
            .GroupBy(a => (string)a!["hardware"]!)
            .ToDictionary(g => g.Key, g => g.Sum(a => (int)a!["replicas"]!));

    static void CheckLimits(JsonNode? limits, Dictionary<string, int> replicasByClass, List<string> violations)
    {
        if (limits is not JsonObject byClass) return;
        foreach (var (hardware, limit) in byClass)
            if (replicasByClass.GetValueOrDefault(hardware) > (int)limit!)
                violations.Add($"{replicasByClass[hardware]} replicas on {hardware} over its limit {limit}");
    }
}
