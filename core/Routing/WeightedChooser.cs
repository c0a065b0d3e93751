namespace Adaptive.Core.Routing;

/// <summary>
/// Smooth weighted round-robin (as nginx does it): over any run of picks each item's count stays within one
/// of its exact share, and picks of the same item are spread out rather than bunched. The router splits a
/// stage's requests among its variants with it, and the simulator does the same.
/// </summary>
public sealed class WeightedChooser<T>
{
    readonly IReadOnlyList<T> items;
    readonly Func<T, double> weight;
    readonly double[] current;
    readonly Lock gate = new();

    public WeightedChooser(IReadOnlyList<T> items, Func<T, double> weight)
    {
        this.items = items;
        this.weight = weight;
        current = new double[items.Count];
    }

    public T Next() => Next(_ => true)!;

    /// <summary>The next item among those <paramref name="usable"/> allows (the others sit out, their turns kept); default when none is.</summary>
    public T? Next(Func<T, bool> usable)
    {
        lock (gate)
        {
            int best = -1;
            double sum = 0;
            for (int i = 0; i < current.Length; i++)
            {
                if (!usable(items[i])) continue;
                double w = weight(items[i]);
                current[i] += w;
                sum += w;
                if (best < 0 || current[i] > current[best]) best = i;
            }
            if (best < 0) return default;
            current[best] -= sum;
            return items[best];
        }
    }
}
