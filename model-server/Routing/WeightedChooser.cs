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
    readonly double total;
    readonly Lock gate = new();

    public WeightedChooser(IReadOnlyList<VariantRoute> variants)
    {
        this.variants = variants;
        current = new double[variants.Count];
        total = variants.Sum(v => v.Weight);
    }

    public VariantRoute Next()
    {
        lock (gate)
        {
            int best = 0;
            for (int i = 0; i < current.Length; i++)
            {
                current[i] += variants[i].Weight;
                if (current[i] > current[best]) best = i;
            }
            current[best] -= total;
            return variants[best];
        }
    }
}
