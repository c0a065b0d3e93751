using Adaptive.Core.Routing;

namespace Adaptive.ModelServer.Routing;

/// <summary>
/// Smooth weighted round-robin (as nginx does it): over any run of requests each variant's count stays
/// within one of its exact share, and picks of the same variant are spread out rather than bunched.
/// </summary>
public sealed class WeightedChooser
{
    readonly IReadOnlyList<VariantRoute> variants;
    readonly double[] current;
    readonly Lock gate = new();

    public WeightedChooser(IReadOnlyList<VariantRoute> variants)
    {
        this.variants = variants;
        current = new double[variants.Count];
    }

    public VariantRoute Next() => Next(_ => true)!;

    /// <summary>The next variant among those <paramref name="usable"/> allows (the others sit out, their turns kept); null when none is.</summary>
    public VariantRoute? Next(Func<VariantRoute, bool> usable)
    {
        lock (gate)
        {
            int best = -1;
            double sum = 0;
            for (int i = 0; i < current.Length; i++)
            {
                if (!usable(variants[i])) continue;
                current[i] += variants[i].Weight;
                sum += variants[i].Weight;
                if (best < 0 || current[i] > current[best]) best = i;
            }
            if (best < 0) return null;
            current[best] -= sum;
            return variants[best];
        }
    }
}
