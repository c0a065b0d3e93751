using System.CommandLine;
using System.Globalization;
using System.Text;
using Adaptive.Core.Forecasting;
using Adaptive.Core.Planning;
using Adaptive.Experiments.Forecasting;
using Adaptive.Experiments.Workloads;
using Spectre.Console;

namespace Adaptive.Experiments.Commands;

/// <summary>
/// <c>adaptive forecast</c>: trains the learned forecaster on the first days of the trace and scores every
/// forecaster on the days held out, as the operator would use them: every interval, the peak of the next
/// interval from the 30 s rate every 5 s.
/// </summary>
public static class ForecastCommand
{
    const int Day = 86_400;

    public static Command Create()
    {
        var trace = new Option<string>("--trace") { Description = "The per-second request trace (gzip)", DefaultValueFactory = _ => TwitterTrace.DefaultPath };
        var trainDays = new Option<int>("--train-days") { Description = "Days the learned model trains on; the rest are held out for scoring", DefaultValueFactory = _ => 16 };
        var interval = new Option<int>("--interval") { Description = "Seconds between decisions (the forecast horizon)", DefaultValueFactory = _ => 30 };
        var epochs = new Option<int>("--epochs") { Description = "Training passes", DefaultValueFactory = _ => new TrainingOptions().Epochs };
        var model = new Option<string?>("--model") { Description = "Score this ONNX forecaster model instead of training one" };
        var output = new Option<string>("--out") { Description = "Directory for the model and the scores", DefaultValueFactory = _ => "forecast-report" };
        var command = new Command("forecast", "Train the learned load forecaster and score every forecaster on held-out days of the trace")
        {
            trace, trainDays, interval, epochs, model, output,
        };
        command.SetAction(parse => Run(parse.GetValue(trace)!, parse.GetValue(trainDays), parse.GetValue(interval), parse.GetValue(epochs),
            parse.GetValue(model), parse.GetValue(output)!));
        return command;
    }

    static int Run(string tracePath, int trainDays, int interval, int epochs, string? modelPath, string output)
    {
        try
        {
            if (!File.Exists(tracePath)) throw new PlanningInputException("--trace", $"no such file: {tracePath}");
            if (modelPath != null && !File.Exists(modelPath)) throw new PlanningInputException("--model", $"no such file: {modelPath}");
            if (interval < 5) throw new PlanningInputException("--interval", $"must be at least 5 s (the history's step), got {interval}");
            if (epochs < 1) throw new PlanningInputException("--epochs", $"must be at least 1, got {epochs}");
            double[] arrivals = [.. TwitterTrace.Load(tracePath).Select(c => (double)c)];
            int days = arrivals.Length / Day;
            if (trainDays < 2 || trainDays >= days)
                throw new PlanningInputException("--train-days", $"must leave at least one of the trace's {days} whole days held out and train on at least 2, got {trainDays}");
            Directory.CreateDirectory(output);
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

            byte[] model;
            if (modelPath != null) model = File.ReadAllBytes(modelPath);
            else
            {
                var (features, targets) = ForecastTrainer.Samples(arrivals, 0, trainDays * Day);
                console.MarkupLine($"training on days 1–{trainDays}: {features.Length} samples");
                model = ForecastTrainer.Train(features, targets, new TrainingOptions(Epochs: epochs),
                    (epoch, loss) => console.MarkupLine($"epoch {epoch}/{epochs}: pinball loss {loss:F4}"));
                File.WriteAllBytes(Path.Combine(output, "learned-forecaster.onnx"), model);
            }

            using var learned = new LearnedForecaster(model);
            int start = trainDays * Day, end = days * Day;
            int step = ArrivalHistory.OperatorStepSeconds, window = ArrivalHistory.OperatorWindowSeconds;
            var seasonal = new SeasonalForecaster(Day / step);
            var scores = new List<ForecastScore>();
            foreach (var forecaster in new ILoadForecaster[] { new LastValueForecaster(), new MovingMaxForecaster(), new EwmaTrendForecaster(), seasonal, learned })
            {
                int history = forecaster == seasonal ? (seasonal.RequiredHistory(interval / step + 1) + 1) * step : LearnedForecaster.HistoryPoints * step;
                scores.Add(ForecastEvaluation.Evaluate(forecaster, arrivals, start, end, interval, history, step, window));
            }
            Write(scores, output, trainDays, days, interval, modelPath);
            return ExitCodes.Ok;
        }
        catch (PlanningInputException e)
        {
            Console.Error.WriteLine($"adaptive forecast: {e.Message}");
            return ExitCodes.InvalidInput;
        }
    }

    static void Write(List<ForecastScore> scores, string output, int trainDays, int days, int interval, string? modelPath)
    {
        string F(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);
        var table = new Table().Title(Markup.Escape($"held-out days {trainDays + 1}–{days}, a decision every {interval} s"))
            .AddColumns("forecaster", "decisions", "MAE rps", "MAPE %", "under-predicted");
        var csv = new StringBuilder("forecaster,decisions,mae_rps,mape_percent,under_prediction_rate\n");
        var markdown = new StringBuilder($"Held-out days {trainDays + 1}–{days} of the trace, a decision every {interval} s, forecasting the peak 30 s rate of the next interval from the 30 s rate every 5 s; "
            + (modelPath == null ? $"the learned model trained on days 1–{trainDays}.\n\n" : $"the learned model from {modelPath}.\n\n")
            + "| forecaster | decisions | MAE (rps) | MAPE | under-predicted |\n|---|---:|---:|---:|---:|\n");
        foreach (var s in scores)
        {
            table.AddRow(s.Forecaster, $"{s.Decisions}", F(s.MaeRps), F(s.MapePercent), $"{F(100 * s.UnderPredictionRate)} %");
            csv.AppendLine(string.Join(',', s.Forecaster, s.Decisions, F(s.MaeRps), F(s.MapePercent), s.UnderPredictionRate.ToString("0.0000", CultureInfo.InvariantCulture)));
            markdown.AppendLine($"| {s.Forecaster} | {s.Decisions} | {F(s.MaeRps)} | {F(s.MapePercent)} % | {F(100 * s.UnderPredictionRate)} % |");
        }
        File.WriteAllText(Path.Combine(output, "forecast-scores.csv"), csv.ToString());
        File.WriteAllText(Path.Combine(output, "forecast-scores.md"), markdown.ToString());
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected) console.Profile.Width = 160;
        console.Write(table);
    }
}
