using System.CommandLine;
using Adaptive.Experiments;
using Adaptive.Experiments.Commands;

var root = new RootCommand("adaptive: plan, profile, benchmark and replay ML inference pipelines")
{
    PlanCommand.Create(),
    BenchCommand.Create(),
    ZooCommand.Create(),
    ProfileCommand.Create(),
    ReplayCommand.Create(),
    ForecastCommand.Create(),
};
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors) Console.Error.WriteLine($"adaptive: {error.Message}");
    return ExitCodes.InvalidInput;
}
return parse.Invoke();
