using Adaptive.Core.Api.V1Alpha1;

namespace Adaptive.Operator.Reconciliation;

/// <summary>Status conditions of pipelines and pools, as the Kubernetes API conventions define them.</summary>
public static class Conditions
{
    /// <summary>Sets a condition; its transition time changes only when its status does, as the API conventions ask.</summary>
    public static void Set(List<PipelineCondition> conditions, string type, bool value, string reason, string message, long? generation, DateTimeOffset now)
    {
        string text = value ? "True" : "False";
        var existing = conditions.FirstOrDefault(c => c.Type == type);
        if (existing is null)
        {
            existing = new PipelineCondition { Type = type, LastTransitionTime = now };
            conditions.Add(existing);
        }
        else if (existing.Status != text) existing.LastTransitionTime = now;
        existing.Status = text;
        existing.Reason = reason;
        existing.Message = message;
        existing.ObservedGeneration = generation;
    }

    public static bool Is(IEnumerable<PipelineCondition>? conditions, string type, string reason) =>
        conditions?.Any(c => c.Type == type && c.Reason == reason) == true;
}
