using Adaptive.Experiments.Zoo.Onnx;
using static Adaptive.Experiments.Zoo.OnnxGraphBuilder;

namespace Adaptive.Experiments.Zoo;

/// <summary>
/// The ResNet architectures of He et al. (2016), as torchvision defines them (stride on the 3×3
/// convolution of bottleneck blocks), for ImageNet's 1000 classes. Batch normalisation is folded into
/// the convolutions' biases, as inference exporters do. Weights are random, so predictions are
/// meaningless, but the operators, shapes and arithmetic, and so the latency, are the real ones.
/// </summary>
public static class ResNet
{
    public sealed record Variant(int Depth, bool Bottleneck, int[] BlocksPerStage, double PublishedTop1);

    /// <summary>Top-1 accuracies published for torchvision's ImageNet weights (IMAGENET1K_V1).</summary>
    public static readonly IReadOnlyList<Variant> Variants =
    [
        new(18, false, [2, 2, 2, 2], 69.758),
        new(34, false, [3, 4, 6, 3], 73.314),
        new(50, true, [3, 4, 6, 3], 76.130),
        new(101, true, [3, 4, 23, 3], 77.374),
        new(152, true, [3, 8, 36, 3], 78.312),
    ];

    public const string InputName = "input";
    public const string OutputName = "logits";
    const int Classes = 1000;

    public static Variant Find(int depth) =>
        Variants.FirstOrDefault(v => v.Depth == depth) ?? throw new ArgumentException($"no ResNet-{depth}; the zoo has {string.Join(", ", Variants.Select(v => v.Depth))}");

    /// <summary>Input [batch, 3, resolution, resolution] FP32, output [batch, 1000] logits.</summary>
    public static (ModelProto Model, long Parameters) Create(Variant variant, int resolution, int seed)
    {
        var g = new OnnxGraphBuilder($"resnet{variant.Depth}", seed);
        string x = g.Input(InputName, null, 3, resolution, resolution);

        x = Conv(g, x, 3, 64, kernel: 7, stride: 2, residualScale: 1);
        x = g.Node("Relu", [x]);
        x = g.Node("MaxPool", [x], Ints("kernel_shape", 3, 3), Ints("strides", 2, 2), Ints("pads", 1, 1, 1, 1));

        // Without batch normalisation a residual sum doubles the variance at every block; scaling each
        // branch's last convolution by 1/√blocks keeps activations finite through ResNet-152.
        int totalBlocks = variant.BlocksPerStage.Sum();
        double residualScale = 1 / Math.Sqrt(totalBlocks);
        int channels = 64;
        int[] widths = [64, 128, 256, 512];
        for (int stage = 0; stage < widths.Length; stage++)
        {
            for (int block = 0; block < variant.BlocksPerStage[stage]; block++)
            {
                int stride = stage > 0 && block == 0 ? 2 : 1;
                (x, channels) = variant.Bottleneck
                    ? BottleneckBlock(g, x, channels, widths[stage], stride, residualScale)
                    : BasicBlock(g, x, channels, widths[stage], stride, residualScale);
            }
        }

        x = g.Node("GlobalAveragePool", [x]);
        x = g.Node("Flatten", [x], Int("axis", 1));
        string weight = g.Weight("fc_weight", [Classes, channels], Math.Sqrt(1.0 / channels));
        string bias = g.Weight("fc_bias", [Classes], 0.01);
        g.Node("Gemm", [x, weight, bias], Int("transB", 1));
        g.Output(g.NameLastOutput(OutputName), null, Classes);

        var metadata = new Dictionary<string, string>
        {
            ["architecture"] = $"resnet{variant.Depth}",
            ["published_top1"] = variant.PublishedTop1.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["weights"] = $"random, seed {seed}",
        };
        return (g.Build(metadata), g.ParameterCount);
    }

    static (string Output, int Channels) BasicBlock(OnnxGraphBuilder g, string x, int inChannels, int width, int stride, double residualScale)
    {
        string branch = g.Node("Relu", [Conv(g, x, inChannels, width, 3, stride, 1)]);
        branch = Conv(g, branch, width, width, 3, 1, residualScale);
        return (Join(g, x, branch, inChannels, width, stride), width);
    }

    static (string Output, int Channels) BottleneckBlock(OnnxGraphBuilder g, string x, int inChannels, int width, int stride, double residualScale)
    {
        int outChannels = width * 4;
        string branch = g.Node("Relu", [Conv(g, x, inChannels, width, 1, 1, 1)]);
        branch = g.Node("Relu", [Conv(g, branch, width, width, 3, stride, 1)]);
        branch = Conv(g, branch, width, outChannels, 1, 1, residualScale);
        return (Join(g, x, branch, inChannels, outChannels, stride), outChannels);
    }

    /// <summary>Residual sum and ReLU; a 1×1 projection on the shortcut when the shape changes.</summary>
    static string Join(OnnxGraphBuilder g, string x, string branch, int inChannels, int outChannels, int stride)
    {
        string shortcut = stride != 1 || inChannels != outChannels ? Conv(g, x, inChannels, outChannels, 1, stride, 1) : x;
        return g.Node("Relu", [g.Node("Add", [branch, shortcut])]);
    }

    /// <summary>Convolution with He-initialised weights and a bias (the folded batch normalisation).</summary>
    static string Conv(OnnxGraphBuilder g, string x, int inChannels, int outChannels, int kernel, int stride, double residualScale)
    {
        double heStd = Math.Sqrt(2.0 / (inChannels * kernel * kernel)) * residualScale;
        string weight = g.Weight("conv_weight", [outChannels, inChannels, kernel, kernel], heStd);
        string bias = g.Weight("conv_bias", [outChannels], 0.01);
        int pad = kernel / 2;
        return g.Node("Conv", [x, weight, bias],
            Ints("kernel_shape", kernel, kernel), Ints("strides", stride, stride), Ints("pads", pad, pad, pad, pad));
    }
}
