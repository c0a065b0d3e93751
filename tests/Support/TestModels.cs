using Adaptive.Experiments.Zoo;
using Google.Protobuf;
using static Adaptive.Experiments.Zoo.OnnxGraphBuilder;

namespace Adaptive.Tests.Support;

/// <summary>
/// Models the serving tests use, written once per test run: a real ResNet-18 at 32×32 pixels from the
/// zoo (fast, but the real architecture), and a small classifier head that takes ResNet logits, so that
/// two stages can be chained.
/// </summary>
public sealed class TestModels : IDisposable
{
    public const int Resolution = 32;
    public const int HeadClasses = 10;

    public string Directory { get; } = System.IO.Directory.CreateTempSubdirectory("adaptive-models-").FullName;
    public string ResNet18 { get; }
    public string Head { get; }
    public long ImageElements => 3L * Resolution * Resolution;

    public TestModels()
    {
        var index = ModelZoo.Write(Directory, Resolution, [18], seed: 7);
        ResNet18 = Path.Combine(Directory, index.Models[0].File);
        Head = Path.Combine(Directory, "head.onnx");
        var g = new OnnxGraphBuilder("head", seed: 3);
        string x = g.Input("features", null, 1000);
        string logits = g.Node("Gemm", [x, g.Weight("w", [HeadClasses, 1000], 0.03), g.Weight("b", [HeadClasses], 0.01)], Int("transB", 1));
        g.Node("Softmax", [logits], Int("axis", 1));
        g.Output(g.NameLastOutput("probabilities"), null, HeadClasses);
        using var stream = File.Create(Head);
        g.Build(new Dictionary<string, string>()).WriteTo(stream);
    }

    /// <summary>A deterministic image batch, [rows, 3, 32, 32].</summary>
    public float[] Images(int rows, int seed)
    {
        var random = new Random(seed);
        var data = new float[rows * ImageElements];
        for (int i = 0; i < data.Length; i++) data[i] = (float)random.NextDouble();
        return data;
    }

    public void Dispose() => System.IO.Directory.Delete(Directory, recursive: true);

    /// <summary>
    /// adaptive-server serve's settings for <see cref="ResNet18"/> as "classify" on a free loopback port, given
    /// through environment variables as the operator configures pods.
    /// </summary>
    public Dictionary<string, string> ServerEnvironment(int intraOpThreads) => new()
    {
        ["ADAPTIVE_MODEL"] = ResNet18,
        ["ADAPTIVE_NAME"] = "classify",
        ["ADAPTIVE_HOST"] = "127.0.0.1",
        ["ADAPTIVE_PORT"] = "0",
        ["ADAPTIVE_INTRA_OP_THREADS"] = intraOpThreads.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["ADAPTIVE_DEVICE"] = "cpu",
    };
}
