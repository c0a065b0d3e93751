using System.Text.Json;
using Google.Protobuf;

namespace Adaptive.Experiments.Zoo;

/// <summary>One model of the zoo as the metadata file describes it.</summary>
public sealed record ZooModel(string Name, string File, int Depth, long Parameters, double Top1Accuracy, string Input, string Output);

/// <summary>The zoo's metadata file (<c>zoo.json</c>), next to the ONNX files it lists.</summary>
public sealed record ZooIndex(int Resolution, int Seed, string AccuracySource, IReadOnlyList<ZooModel> Models)
{
    public const string FileName = "zoo.json";
    static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static ZooIndex Read(string directory) =>
        JsonSerializer.Deserialize<ZooIndex>(File.ReadAllText(Path.Combine(directory, FileName)), Json)
        ?? throw new InvalidDataException($"{Path.Combine(directory, FileName)} is empty");

    public void Write(string directory) => File.WriteAllText(Path.Combine(directory, FileName), JsonSerializer.Serialize(this, Json));
}

public static class ModelZoo
{
    public const int DefaultResolution = 224;
    public const int DefaultSeed = 1;

    /// <summary>Writes <c>resnetN.onnx</c> for each depth and the metadata file; returns the index.</summary>
    public static ZooIndex Write(string directory, int resolution, IEnumerable<int> depths, int seed, Action<ZooModel>? written = null)
    {
        if (resolution < 32) throw new ArgumentOutOfRangeException(nameof(resolution), resolution, "--resolution must be at least 32 (ResNets downsample by 32)");
        Directory.CreateDirectory(directory);
        var models = new List<ZooModel>();
        foreach (int depth in depths)
        {
            var variant = ResNet.Find(depth);
            var (model, parameters) = ResNet.Create(variant, resolution, seed);
            string file = $"resnet{depth}.onnx";
            using (var stream = File.Create(Path.Combine(directory, file))) model.WriteTo(stream);
            var entry = new ZooModel($"resnet{depth}", file, depth, parameters, variant.PublishedTop1, ResNet.InputName, ResNet.OutputName);
            models.Add(entry);
            written?.Invoke(entry);
        }
        var index = new ZooIndex(resolution, seed, "torchvision ImageNet top-1 (IMAGENET1K_V1), as published", models);
        index.Write(directory);
        return index;
    }
}
