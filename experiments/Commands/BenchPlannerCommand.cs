using System.CommandLine;

namespace Adaptive.Experiments.Commands;

public static class BenchPlannerCommand
{
    public static Command Create() => new("planner", "Planner solve time over a grid of pipeline sizes");
}
