using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Adaptive.Tests.Support;

/// <summary>
/// Renders the chart with Helm v3's own rendering code: the shared <c>helm-template</c> tool, which
/// <c>./test.sh</c> builds into <c>.tools/helm-template</c> from <c>../shared/tools/helm-template</c>.
/// </summary>
static class HelmTemplate
{
    static readonly string[] Places = [RepoPaths.Of(".tools", "helm-template", "helm-template"), RepoPaths.Of("..", "shared", "tools", "helm-template", "helm-template")];

    /// <summary>The built tool; null where it is not (then tests skip with <see cref="Missing"/>).</summary>
    public static string? Binary => Places.FirstOrDefault(File.Exists);

    public static string Missing => $"helm-template is not built at {Places[0]}: run ./test.sh, which builds it from ../shared/tools/helm-template";

    /// <summary><c>helm template</c> of <paramref name="chart"/> with each value of <paramref name="set"/> given as <c>--set-json path=value</c>.</summary>
    public static string Render(string chart, string releaseName, string releaseNamespace, IReadOnlyDictionary<string, JsonNode?>? set = null)
    {
        var start = new ProcessStartInfo(Binary ?? throw new InvalidOperationException(Missing)) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { releaseName, chart, "-n", releaseNamespace }) start.ArgumentList.Add(arg);
        foreach (var (path, value) in set ?? new Dictionary<string, JsonNode?>())
        {
            start.ArgumentList.Add("--set-json");
            start.ArgumentList.Add($"{path}={value?.ToJsonString() ?? "null"}");
        }
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromSeconds(60))) throw new TimeoutException("helm-template ran over 60 s");
        if (process.ExitCode != 0) throw new InvalidOperationException($"helm-template failed: {stderr.Result}");
        return stdout.Result;
    }
}
