using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;

namespace Adaptive.Experiments.Replay.Policies;

/// <summary>The policies <c>adaptive replay</c> compares, by name.</summary>
public static class ReplayPolicies
{
    public static readonly IReadOnlyList<string> Names = ["ipa", "infadapter", "static", "hpa", "vpa", "model-switching", "fa2", "rim"];

    public static readonly IReadOnlyDictionary<string, string> Descriptions = new Dictionary<string, string>
    {
        ["ipa"] = "Adaptive, one variant per stage with batch and replicas (IPA)",
        ["infadapter"] = "Adaptive, a set of variants per stage sharing the load (InfAdapter)",
        ["static"] = "planned once for the window's peak, never changed",
        ["hpa"] = "Kubernetes' HPA on the median variant at its target utilization (--hpa-target, 70 %)",
        ["vpa"] = "vertical autoscaling of the median variant, pod recreated on resize",
        ["model-switching"] = "MS+ approximated: Adaptive's planner restricted to one variant at a time, unbatched, at replicas fixed for the window's mean load (MS+ itself switches by a load-threshold table)",
        ["fa2"] = "FA2 approximated: Adaptive's planner choosing batch and replicas for the fixed median variant (FA2 itself solves its own latency model by dynamic programming over the stages)",
        ["rim"] = "RIM approximated: Adaptive's planner switching variants, unbatched, at replicas fixed for the window's peak (RIM itself switches models by a lookup on the observed load)",
    };

    /// <param name="peakRps">The window's peak per-second rate: what the over-provisioned baselines are sized for.</param>
    /// <param name="meanRps">The window's mean rate: what model switching's fixed replicas are sized for.</param>
    /// <param name="hpaTarget">The utilization hpa scales to.</param>
    public static IReplayPolicy Create(string name, ReplayPipeline pipeline, double peakRps, double meanRps, double hpaTarget = HpaPolicy.DefaultTarget) => name switch
    {
        "ipa" => new PlannerPolicy(name, pipeline.Derive(spec => spec.Stages.ForEach(s => s.Mode = "single"))),
        "infadapter" => new PlannerPolicy(name, pipeline.Derive(spec => spec.Stages.ForEach(s => s.Mode = "mixed"))),
        "static" => new StaticPolicy(pipeline.Spec, peakRps),
        "hpa" => new HpaPolicy(pipeline.Spec, hpaTarget),
        "vpa" => new VpaPolicy(pipeline.Spec),
        "fa2" => new PlannerPolicy(name, pipeline.Derive(spec => spec.Stages.ForEach(s =>
        {
            s.Variants = [ReplayPipeline.FixedVariant(s)];
            s.Mode = "single";
        }))),
        "model-switching" => new PlannerPolicy(name, FixedReplicas(pipeline, meanRps)),
        "rim" => new PlannerPolicy(name, FixedReplicas(pipeline, peakRps)),
        _ => throw new PlanningInputException("--policies", $"unknown policy '{name}'; use {string.Join(", ", Names)}"),
    };

    /// <summary>Variant switching at a fixed, unbatched replica count per stage: what the median variant needs for <paramref name="sizingRps"/>.</summary>
    static InferencePipeline FixedReplicas(ReplayPipeline pipeline, double sizingRps)
    {
        var replicas = new FixedVariantScaling(pipeline.Spec).ReplicasFor(sizingRps, 1);
        return pipeline.Derive(spec =>
        {
            for (int i = 0; i < spec.Stages.Count; i++)
            {
                var stage = spec.Stages[i];
                stage.Mode = "single";
                stage.BatchSizes = [1];
                stage.MinReplicas = stage.MaxReplicas = replicas[i];
            }
        });
    }
}
