using System.IO.Compression;

namespace Adaptive.Experiments.Workloads;

/// <summary>
/// The Twitter trace shipped with the tool (Data/twitter-trace.txt.gz; provenance in Data/README.md):
/// requests per second over about 22 days.
/// </summary>
public static class TwitterTrace
{
    public const string FileName = "twitter-trace.txt.gz";

    /// <summary>Where the trace is installed next to the tool.</summary>
    public static string DefaultPath => Path.Combine(AppContext.BaseDirectory, "Data", FileName);

    public static int[] Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"the trace {path} does not exist", path);
        using var file = File.OpenRead(path);
        using var text = new StreamReader(new GZipStream(file, CompressionMode.Decompress));
        var counts = new List<int>(2_000_000);
        int value = 0;
        bool inNumber = false;
        while (text.Read() is var c and not -1)
        {
            if (c is >= '0' and <= '9')
            {
                value = checked(value * 10 + (c - '0'));
                inNumber = true;
            }
            else if (char.IsWhiteSpace((char)c))
            {
                if (inNumber) counts.Add(value);
                (value, inNumber) = (0, false);
            }
            else throw new InvalidDataException($"{path}: '{(char)c}' after {counts.Count} counts; the trace holds only non-negative integers");
        }
        if (inNumber) counts.Add(value);
        return [.. counts];
    }
}
