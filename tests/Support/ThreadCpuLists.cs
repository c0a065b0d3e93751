namespace Adaptive.Tests.Support;

public static class ThreadCpuLists
{
    /// <summary>The CPUs each thread of this process may run on (/proc's Cpus_allowed_list, e.g. "0-1" or "1").</summary>
    public static List<string> OfThisProcess() =>
        [.. Directory.EnumerateDirectories("/proc/self/task")
            .Select(task => Path.Combine(task, "status"))
            .Select(status => File.Exists(status) ? File.ReadLines(status).FirstOrDefault(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)) : null)
            .OfType<string>()
            .Select(line => line["Cpus_allowed_list:".Length..].Trim())];
}
