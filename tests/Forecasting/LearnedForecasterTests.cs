using Adaptive.Core.Forecasting;
using Adaptive.Experiments.Forecasting;
using Adaptive.Experiments.Workloads;
using Adaptive.Experiments.Zoo;
using Google.Protobuf;

namespace Adaptive.Tests.Forecasting;

/// <summary>The learned forecaster: trained here, written as ONNX, run by ONNX Runtime.</summary>
public sealed class LearnedForecasterTests
{
    const int Day = 86_400;
    static readonly double[] Trace = [.. TwitterTrace.Load(TwitterTrace.DefaultPath).Select(c => (double)c)];

    [Fact]
    public void The_shipped_model_forecasts_a_conservative_peak_in_requests_per_second_whatever_the_scale()
    {
        var learned = LoadForecasters.Create("learned");
        Assert.Same(LearnedForecaster.Shipped, learned);
        double[] steady = [.. Enumerable.Repeat(40.0, 120)];
        double forecast = learned.ForecastPeak(steady, 6);
        Assert.InRange(forecast, 40, 48); // the 90 % quantile of a steady load's next peak: at or a little above it
        // Inputs are divided by their mean: ten times the load, ten times the forecast.
        Assert.Equal(10 * forecast, learned.ForecastPeak([.. steady.Select(r => r * 10)], 6), 3);
        // A short history is padded; the forecast is still a rate.
        Assert.InRange(learned.ForecastPeak([40, 40, 40], 6), 40, 48);
    }

    [Fact]
    public void A_model_without_the_forecaster_s_input_is_refused()
    {
        var graph = new OnnxGraphBuilder("not_a_forecaster", seed: 1);
        graph.Input("x", null, 4);
        graph.Node("Relu", ["x"]);
        graph.Output(graph.NameLastOutput("y"), null, 4);
        byte[] other = graph.Build(new Dictionary<string, string>()).ToByteArray();
        Assert.Contains("a forecaster model takes 'features'", Assert.Throws<ArgumentException>(() => new LearnedForecaster(other)).Message);
    }

    /// <summary>
    /// Trained on two days and scored on the third, as the operator forecasts: the exported ONNX model under-predicts
    /// about as rarely as its 90 % quantile loss asks, far more rarely than the moving max; training is reproducible.
    /// </summary>
    [Fact]
    public void Training_on_two_days_gives_a_model_that_rarely_under_predicts_the_next_day()
    {
        var (features, targets) = ForecastTrainer.Samples(Trace, 0, 2 * Day);
        var options = new TrainingOptions(Epochs: 2);
        var losses = new List<double>();
        byte[] model = ForecastTrainer.Train(features, targets, options, (_, loss) => losses.Add(loss));
        Assert.True(losses[^1] < losses[0], $"the loss went from {losses[0]} to {losses[^1]}");
        Assert.Equal(model, ForecastTrainer.Train(features, targets, options));

        using var learned = new LearnedForecaster(model);
        int step = ArrivalHistory.OperatorStepSeconds, window = ArrivalHistory.OperatorWindowSeconds, history = LearnedForecaster.HistoryPoints * step;
        var score = ForecastEvaluation.Evaluate(learned, Trace, 2 * Day, 3 * Day, 30, history, step, window);
        var movingMax = ForecastEvaluation.Evaluate(new MovingMaxForecaster(), Trace, 2 * Day, 3 * Day, 30, history, step, window);
        Assert.InRange(score.UnderPredictionRate, 0.02, 0.25);
        Assert.True(score.UnderPredictionRate < movingMax.UnderPredictionRate / 2, $"learned {score.UnderPredictionRate:P1}, moving max {movingMax.UnderPredictionRate:P1}");
        Assert.InRange(score.MapePercent, 1, 20);
    }

    [Fact]
    public void The_seasonal_forecaster_repeats_the_last_season_scaled_to_the_current_level()
    {
        // A season of 20 steps: a ramp 1..20, three times; the next two steps are 1 and 2 again.
        double[] history = [.. Enumerable.Range(0, 60).Select(i => (double)(i % 20 + 1))];
        var seasonal = new SeasonalForecaster(seasonSteps: 20);
        Assert.Equal(2, seasonal.ForecastPeak(history, 2));
        Assert.Contains("needs 32 steps", Assert.Throws<ArgumentException>(() => seasonal.ForecastPeak(history[..30], 2)).Message);
        // From step 40 on the load doubles: a season ago it was already double (4), and the level has doubled since (× 2).
        double[] doubled = [.. history.Select((r, i) => i >= 40 ? 2 * r : r)];
        Assert.Equal(8, seasonal.ForecastPeak(doubled, 2), 6);
    }
}
