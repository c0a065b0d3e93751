using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Adaptive.Core.Forecasting;

/// <summary>
/// A small neural network (two hidden layers) that predicts the next interval's peak from the last
/// <see cref="HistoryPoints"/> rates, run with ONNX Runtime. <c>adaptive forecast</c> trains it on the Twitter
/// trace with a 90 % quantile loss — over-predicting is cheaper than under-predicting — and writes it as ONNX;
/// the one trained on days 1–16 ships inside this assembly, so the operator carries no training dependency.
/// Inputs are scale-free: the rates divided by their mean, and the horizon; the output is the peak in that unit.
/// </summary>
public sealed class LearnedForecaster : ILoadForecaster, IDisposable
{
    /// <summary>Ten minutes at the operator's 5 s step.</summary>
    public const int HistoryPoints = 120;
    public const int Features = HistoryPoints + 1;
    public const string InputName = "features";
    public const string OutputName = "peak_ratio";
    const string ShippedResource = "learned-forecaster.onnx";

    static readonly Lazy<LearnedForecaster> ShippedModel = new(() =>
    {
        using var stream = typeof(LearnedForecaster).Assembly.GetManifestResourceStream(ShippedResource)
            ?? throw new InvalidOperationException($"the shipped forecaster model {ShippedResource} is missing from the assembly");
        using var bytes = new MemoryStream();
        stream.CopyTo(bytes);
        return new LearnedForecaster(bytes.ToArray());
    });

    readonly InferenceSession session;

    /// <param name="onnxModel">An ONNX model with input <c>features</c> [batch, 121] and output <c>peak_ratio</c> [batch, 1].</param>
    public LearnedForecaster(byte[] onnxModel)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        session = new InferenceSession(onnxModel, options);
        if (!session.InputMetadata.ContainsKey(InputName) || !session.OutputMetadata.ContainsKey(OutputName))
            throw new ArgumentException($"a forecaster model takes '{InputName}' and gives '{OutputName}'", nameof(onnxModel));
    }

    /// <summary>The model trained on the shipped Twitter trace.</summary>
    public static LearnedForecaster Shipped => ShippedModel.Value;

    public string Name => "learned";

    public double ForecastPeak(IReadOnlyList<double> history, int horizon)
    {
        LoadForecasters.Check(history, horizon);
        var input = new DenseTensor<float>([1, Features]);
        double scale = Featurize(history, horizon, input.Buffer.Span);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(InputName, input)]);
        float ratio = results[0].AsEnumerable<float>().First();
        return Math.Max(0, ratio * scale);
    }

    /// <summary>
    /// Writes the model's inputs for <paramref name="history"/> into <paramref name="features"/> and returns the
    /// scale (the mean rate) that turns the model's output back into requests per second. Training uses it too,
    /// so that the model sees in training what it sees in service.
    /// </summary>
    public static double Featurize(IReadOnlyList<double> history, int horizon, Span<float> features)
    {
        if (features.Length != Features) throw new ArgumentException($"the features take {Features} values", nameof(features));
        double sum = 0;
        for (int i = 0; i < HistoryPoints; i++) sum += Point(history, i);
        double scale = Math.Max(sum / HistoryPoints, 1); // below 1 rps the ratios say nothing, and the operator plans for at least 1 rps
        for (int i = 0; i < HistoryPoints; i++) features[i] = (float)(Point(history, i) / scale);
        features[HistoryPoints] = (float)horizon / HistoryPoints;
        return scale;
    }

    /// <summary>The i-th of the last <see cref="HistoryPoints"/> rates; a shorter history is padded with its oldest rate.</summary>
    static double Point(IReadOnlyList<double> history, int i) => history[Math.Max(0, history.Count - HistoryPoints + i)];

    public void Dispose() => session.Dispose();
}
