using System.CommandLine;

namespace Adaptive.Experiments.Commands;

/// <summary><c>adaptive bench ...</c>: benchmarks, separate from the test suite.</summary>
public static class BenchCommand
{
    public static Command Create() => new("bench", "Run a benchmark") { BenchPlannerCommand.Create(), BenchServerCommand.Create(), BenchColdStartCommand.Create() };
}
