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
        var args = new List<string> { releaseName, chart, "-n", releaseNamespace };
        foreach (var (path, value) in set ?? new Dictionary<string, JsonNode?>()) args.AddRange(["--set-json", $"{path}={value?.ToJsonString() ?? "null"}"]);
        var run = ChildProcess.Run(Binary ?? throw new InvalidOperationException(Missing), args, TimeSpan.FromSeconds(60));
        if (run.ExitCode != 0) throw new InvalidOperationException($"helm-template failed: {run.Stderr}");
        return run.Stdout;
    }
}
