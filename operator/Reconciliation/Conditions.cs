using Adaptive.Core.Api.V1Alpha1;

namespace Adaptive.Operator.Reconciliation;

public static class Conditions
{
    /// <summary>Sets a condition; its transition time changes only when its status does, as the API conventions ask.</summary>
    public static void Set(InferencePipelineStatus status, string type, bool value, string reason, string message, long? generation, DateTimeOffset now)
    {
        string text = value ? "True" : "False";
        var existing = status.Conditions.FirstOrDefault(c => c.Type == type);
        if (existing is null)
        {
            existing = new PipelineCondition { Type = type, LastTransitionTime = now };
            status.Conditions.Add(existing);
        }
        else if (existing.Status != text) existing.LastTransitionTime = now;
        existing.Status = text;
        existing.Reason = reason;
        existing.Message = message;
        existing.ObservedGeneration = generation;
    }

    public static bool Is(InferencePipelineStatus? status, string type, string reason) =>
        status?.Conditions.Any(c => c.Type == type && c.Reason == reason) == true;
}
