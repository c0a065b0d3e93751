using System.CommandLine;
using Adaptive.Experiments.Zoo;

namespace Adaptive.Experiments.Commands;

/// <summary><c>adaptive zoo --out DIR</c>: writes the ResNet model zoo as ONNX files.</summary>
public static class ZooCommand
{
    public static Command Create()
    {
        var output = new Option<DirectoryInfo>("--out") { Description = "Directory to write the ONNX files and zoo.json into", Required = true };
        var resolution = new Option<int>("--resolution") { Description = "Input height and width in pixels", DefaultValueFactory = _ => ModelZoo.DefaultResolution };
        var depths = new Option<int[]>("--depths") { Description = "ResNet depths to write", DefaultValueFactory = _ => [.. ResNet.Variants.Select(v => v.Depth)], AllowMultipleArgumentsPerToken = true };
        var seed = new Option<int>("--seed") { Description = "Seed of the random weights", DefaultValueFactory = _ => ModelZoo.DefaultSeed };
        var command = new Command("zoo", "Write ResNet-18/34/50/101/152 as ONNX with deterministic random weights") { output, resolution, depths, seed };
        command.SetAction(parse => Run(parse.GetValue(output)!, parse.GetValue(resolution), parse.GetValue(depths)!, parse.GetValue(seed)));
        return command;
    }

    static int Run(DirectoryInfo output, int resolution, int[] depths, int seed)
    {
        if (resolution < 32 || resolution > 1024)
            return Fail($"--resolution must be between 32 and 1024 pixels, got {resolution}");
        var unknown = depths.Where(d => ResNet.Variants.All(v => v.Depth != d)).ToList();
        if (unknown.Count > 0)
            return Fail($"--depths: no ResNet-{string.Join(", ResNet-", unknown)}; the zoo has {string.Join(", ", ResNet.Variants.Select(v => v.Depth))}");
        ModelZoo.Write(output.FullName, resolution, depths, seed,
            m => Console.Out.WriteLine($"{Path.Combine(output.FullName, m.File)}  {m.Parameters / 1e6:F2}M parameters  top-1 {m.Top1Accuracy}%"));
        return ExitCodes.Ok;
    }

    static int Fail(string message)
    {
        Console.Error.WriteLine($"adaptive zoo: {message}");
        return ExitCodes.InvalidInput;
    }
}
