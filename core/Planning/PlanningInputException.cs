namespace Adaptive.Core.Planning;

/// <summary>Input that cannot be planned, with the field at fault (e.g. <c>stages[0].variants</c>).</summary>
public sealed class PlanningInputException(string field, string problem) : Exception($"{field}: {problem}")
{
    public string Field { get; } = field;
}
