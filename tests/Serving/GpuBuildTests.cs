using System.Diagnostics;
using System.Text.Json.Nodes;
using Adaptive.Tests.Support;

namespace Adaptive.Tests.Serving;

/// <summary>
/// The GPU image's build switch (<c>dotnet publish model-server -p:Gpu=true</c>, the Dockerfile's
/// <c>model-server-gpu</c> target) as far as it goes without the CUDA packages' 1.8 GB: MSBuild's evaluation of
/// the project, which is what restore then fetches.
/// </summary>
public sealed class GpuBuildTests
{
    [Fact]
    public void The_gpu_switch_swaps_onnx_runtime_for_its_cuda_build_with_a_matching_managed_api()
    {
        var cpu = PackageReferences(gpu: false);
        Assert.Contains("Microsoft.ML.OnnxRuntime", cpu.Keys);
        Assert.DoesNotContain("Microsoft.ML.OnnxRuntime.Gpu", cpu.Keys);

        var gpu = PackageReferences(gpu: true);
        Assert.DoesNotContain("Microsoft.ML.OnnxRuntime", gpu.Keys);
        Assert.True(gpu.TryGetValue("Microsoft.ML.OnnxRuntime.Gpu", out var native) && native is not null, "the GPU build names its CUDA package's version");
        // The managed API must be the native library's own version: they are released together.
        Assert.Equal(native, gpu.GetValueOrDefault("Microsoft.ML.OnnxRuntime.Managed"));
    }

    /// <summary>The model server's package references and their version overrides, as MSBuild evaluates the project.</summary>
    static Dictionary<string, string?> PackageReferences(bool gpu)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = RepoPaths.Root };
        foreach (string arg in new[] { "msbuild", RepoPaths.Of("model-server", "Adaptive.ModelServer.csproj"), "-getItem:PackageReference", $"-p:Gpu={(gpu ? "true" : "false")}" })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(120)), "dotnet msbuild ran over 120 s");
        Assert.True(process.ExitCode == 0, stderr.Result + stdout.Result);
        return JsonNode.Parse(stdout.Result)!["Items"]!["PackageReference"]!.AsArray()
            .ToDictionary(item => (string)item!["Identity"]!, item => (string?)item!["VersionOverride"]);
    }
}
