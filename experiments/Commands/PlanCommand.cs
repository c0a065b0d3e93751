using System.CommandLine;
using Adaptive.Core.Api.V1Alpha1;
using Adaptive.Core.Planning;
using Adaptive.Core.Planning.Exchange;
using Adaptive.Experiments.Manifests;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive plan FILE</c>: one planning decision. FILE is a problem in the exchange format, or an
/// InferencePipeline manifest planned for <c>--rate</c> requests per second. Prints the answer JSON.
/// </summary>
public static class PlanCommand
{
    public static Command Create()
    {
        var file = new Argument<FileInfo>("file") { Description = "A planning problem (JSON, exchange format) or an InferencePipeline manifest (.yaml)" };
        var rate = new Option<double?>("--rate") { Description = "Arrival rate to plan a manifest for, requests per second" };
        var timeLimit = new Option<double>("--time-limit") { Description = "Planner search time limit, seconds", DefaultValueFactory = _ => 10 };
        var command = new Command("plan", "Plan one configuration and print it as JSON") { file, rate, timeLimit };
        command.SetAction(parse => Run(parse.GetValue(file)!, parse.GetValue(rate), parse.GetValue(timeLimit)));
        return command;
    }

    static int Run(FileInfo file, double? rate, double timeLimitSeconds)
    {
        try
        {
            if (!file.Exists) throw new PlanningInputException(file.ToString(), "no such file");
            if (!(timeLimitSeconds > 0)) throw new PlanningInputException("--time-limit", $"must be greater than 0, got {timeLimitSeconds}");
            var (problem, manyPipelines) = Read(file, rate);
            var result = new CpSatPlanner(new PlannerOptions(TimeSpan.FromSeconds(timeLimitSeconds))).Plan(problem);
            Console.Out.WriteLine(ExchangeFormat.Write(result, manyPipelines));
            return result.Status == PlanStatus.Infeasible ? ExitCodes.Infeasible : ExitCodes.Ok;
        }
        catch (PlanningInputException e)
        {
            Console.Error.WriteLine($"adaptive plan: {e.Message}");
            return ExitCodes.InvalidInput;
        }
    }

    static ExchangeDocument Read(FileInfo file, double? rate)
    {
        string text = File.ReadAllText(file.FullName);
        bool manifest = file.Extension is ".yaml" or ".yml" || rate != null;
        if (!manifest) return ExchangeFormat.Parse(text);
        if (rate is not { } load) throw new PlanningInputException("--rate", "is required to plan a manifest (the load to plan for, requests per second)");
        var pipeline = ManifestReader.Parse(text);
        return new ExchangeDocument(PlanningProblem.Single(PlanningProblemBuilder.Build(pipeline, load, [])), false);
    }
}
