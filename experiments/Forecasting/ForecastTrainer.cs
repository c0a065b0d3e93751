using Adaptive.Core.Forecasting;
using Adaptive.Experiments.Zoo;
using Google.Protobuf;

namespace Adaptive.Experiments.Forecasting;

/// <param name="Epochs">Passes over the training samples.</param>
/// <param name="Quantile">The pinball loss's quantile: 0.9 makes the model predict a peak it stays under nine times in ten.</param>
public sealed record TrainingOptions(int Epochs = 8, double Quantile = 0.9, int HiddenUnits = 32, int BatchSize = 128, double LearningRate = 1e-3, int Seed = 1);

/// <summary>
/// Trains <see cref="LearnedForecaster"/>'s network on a trace and writes it as ONNX. The network is small
/// (121 → 32 → 32 → 1, ReLU), so it is trained here with plain backpropagation and Adam: TorchSharp's
/// native library needs a newer C++ runtime (GLIBCXX 3.4.32) than Debian 12 has.
/// </summary>
public static class ForecastTrainer
{
    /// <summary>Intervals the model learns to forecast, in steps of 5 s: 30 s, 1, 2 and 5 minutes.</summary>
    public static readonly int[] Horizons = [6, 12, 24, 60];

    /// <summary>
    /// Targets are capped at this many times the history's mean: the trace's daily half-hour gaps make the load
    /// come back from zero, a jump no history predicts, which would otherwise dominate the loss.
    /// </summary>
    const float MaxTargetRatio = 4;

    /// <summary>One sample per decision (every 30 s) and horizon in seconds [from, to) of the per-second trace.</summary>
    public static (float[][] Features, float[] Targets) Samples(IReadOnlyList<double> arrivals, int from, int to)
    {
        int step = ArrivalHistory.OperatorStepSeconds, window = ArrivalHistory.OperatorWindowSeconds;
        int historySeconds = LearnedForecaster.HistoryPoints * step;
        var features = new List<float[]>();
        var targets = new List<float>();
        for (int t = Math.Max(from, historySeconds + window); t < to; t += 30)
        {
            var history = ArrivalHistory.PrometheusRates(arrivals, t, historySeconds, step, window);
            foreach (int horizon in Horizons)
            {
                if (t + horizon * step > to) continue;
                var x = new float[LearnedForecaster.Features];
                double scale = LearnedForecaster.Featurize(history, horizon, x);
                features.Add(x);
                targets.Add(Math.Min(MaxTargetRatio, (float)(ArrivalHistory.PeakRate(arrivals, t, horizon * step, step, window) / scale)));
            }
        }
        return ([.. features], [.. targets]);
    }

    /// <summary>Trains on the samples and returns the ONNX model. The same samples and options give the same bytes.</summary>
    public static byte[] Train(float[][] features, float[] targets, TrainingOptions options, Action<int, double>? onEpoch = null)
    {
        if (features.Length == 0) throw new ArgumentException("no training samples", nameof(features));
        var random = new Random(options.Seed);
        var network = new Network(LearnedForecaster.Features, options.HiddenUnits, random);
        var order = Enumerable.Range(0, features.Length).ToArray();
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            random.Shuffle(order);
            double loss = 0;
            for (int start = 0; start < order.Length; start += options.BatchSize)
            {
                var batch = order.AsSpan(start, Math.Min(options.BatchSize, order.Length - start));
                loss += network.Step(features, targets, batch, options.Quantile, options.LearningRate);
            }
            onEpoch?.Invoke(epoch, loss / order.Length);
        }
        return network.ToOnnx(options);
    }

    /// <summary>A multilayer perceptron with its Adam state; parameters are flat arrays, weights row-major [in, out].</summary>
    sealed class Network
    {
        readonly int inputs, hidden;
        readonly Layer first, second, output;
        int steps;

        public Network(int inputs, int hidden, Random random)
        {
            (this.inputs, this.hidden) = (inputs, hidden);
            first = new Layer(inputs, hidden, random);
            second = new Layer(hidden, hidden, random);
            output = new Layer(hidden, 1, random);
        }

        /// <summary>One Adam step on a minibatch; returns the batch's summed pinball loss.</summary>
        public double Step(float[][] features, float[] targets, ReadOnlySpan<int> batch, double quantile, double learningRate)
        {
            foreach (var layer in new[] { first, second, output }) layer.ZeroGradients();
            double loss = 0;
            var h1 = new double[hidden];
            var h2 = new double[hidden];
            var g1 = new double[hidden];
            var g2 = new double[hidden];
            var y = new double[1];
            foreach (int index in batch)
            {
                var x = Array.ConvertAll(features[index], v => (double)v);
                first.Forward(x, h1, relu: true);
                second.Forward(h1, h2, relu: true);
                output.Forward(h2, y, relu: false);
                double error = targets[index] - y[0];
                loss += error >= 0 ? quantile * error : (quantile - 1) * error;
                // d(pinball)/dy, averaged over the batch.
                double[] gy = [(error >= 0 ? -quantile : 1 - quantile) / batch.Length];
                output.Backward(h2, gy, g2);
                ReluGradient(h2, g2);
                second.Backward(h1, g2, g1);
                ReluGradient(h1, g1);
                first.Backward(x, g1, null);
            }
            steps++;
            foreach (var layer in new[] { first, second, output }) layer.Adam(learningRate, steps);
            return loss;
        }

        static void ReluGradient(double[] activation, double[] gradient)
        {
            for (int i = 0; i < activation.Length; i++) if (activation[i] <= 0) gradient[i] = 0;
        }

        public byte[] ToOnnx(TrainingOptions options)
        {
            var graph = new OnnxGraphBuilder("learned_forecaster", options.Seed);
            string x = graph.Input(LearnedForecaster.InputName, null, inputs);
            x = first.Onnx(graph, x, relu: true);
            x = second.Onnx(graph, x, relu: true);
            output.Onnx(graph, x, relu: false);
            graph.Output(graph.NameLastOutput(LearnedForecaster.OutputName), null, 1);
            return graph.Build(new Dictionary<string, string>
            {
                ["adaptive.forecaster"] = "learned",
                ["adaptive.step_seconds"] = $"{ArrivalHistory.OperatorStepSeconds}",
                ["adaptive.window_seconds"] = $"{ArrivalHistory.OperatorWindowSeconds}",
                ["adaptive.quantile"] = $"{options.Quantile}",
            }).ToByteArray();
        }
    }

    sealed class Layer
    {
        readonly int inputs, outputs;
        readonly double[] weights, bias, weightGradient, biasGradient;
        readonly double[] m, v; // Adam's moments, weights then bias

        public Layer(int inputs, int outputs, Random random)
        {
            (this.inputs, this.outputs) = (inputs, outputs);
            weights = new double[inputs * outputs];
            bias = new double[outputs];
            weightGradient = new double[weights.Length];
            biasGradient = new double[outputs];
            m = new double[weights.Length + outputs];
            v = new double[weights.Length + outputs];
            double limit = Math.Sqrt(6.0 / inputs); // He initialisation for ReLU
            for (int i = 0; i < weights.Length; i++) weights[i] = (random.NextDouble() * 2 - 1) * limit;
        }

        public void Forward(double[] x, double[] y, bool relu)
        {
            for (int o = 0; o < outputs; o++) y[o] = bias[o];
            for (int i = 0; i < inputs; i++)
            {
                double xi = x[i];
                if (xi == 0) continue;
                int row = i * outputs;
                for (int o = 0; o < outputs; o++) y[o] += xi * weights[row + o];
            }
            if (relu) for (int o = 0; o < outputs; o++) y[o] = Math.Max(0, y[o]);
        }

        /// <summary>Accumulates this layer's gradients for upstream gradient <paramref name="gy"/>, and writes the input's gradient into <paramref name="gx"/>.</summary>
        public void Backward(double[] x, double[] gy, double[]? gx)
        {
            for (int o = 0; o < outputs; o++) biasGradient[o] += gy[o];
            for (int i = 0; i < inputs; i++)
            {
                int row = i * outputs;
                double sum = 0;
                for (int o = 0; o < outputs; o++)
                {
                    weightGradient[row + o] += x[i] * gy[o];
                    sum += weights[row + o] * gy[o];
                }
                if (gx != null) gx[i] = sum;
            }
        }

        public void ZeroGradients()
        {
            Array.Clear(weightGradient);
            Array.Clear(biasGradient);
        }

        public void Adam(double learningRate, int step)
        {
            const double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
            double correction1 = 1 - Math.Pow(beta1, step), correction2 = 1 - Math.Pow(beta2, step);
            void Update(double[] parameters, double[] gradients, int offset)
            {
                for (int i = 0; i < parameters.Length; i++)
                {
                    double g = gradients[i];
                    m[offset + i] = beta1 * m[offset + i] + (1 - beta1) * g;
                    v[offset + i] = beta2 * v[offset + i] + (1 - beta2) * g * g;
                    parameters[i] -= learningRate * (m[offset + i] / correction1) / (Math.Sqrt(v[offset + i] / correction2) + epsilon);
                }
            }
            Update(weights, weightGradient, 0);
            Update(bias, biasGradient, weights.Length);
        }

        public string Onnx(OnnxGraphBuilder graph, string x, bool relu)
        {
            string w = graph.Initializer("weight", [inputs, outputs], Array.ConvertAll(weights, d => (float)d));
            string b = graph.Initializer("bias", [outputs], Array.ConvertAll(bias, d => (float)d));
            string y = graph.Node("Gemm", [x, w, b]);
            return relu ? graph.Node("Relu", [y]) : y;
        }
    }
}
