using Adaptive.Core.Routing;
using FsCheck;
using FsCheck.Fluent;

namespace Adaptive.Tests.Routing;

public sealed class WeightedChooserTests
{
    /// <summary>
    /// After any number of picks, each variant's count is within (k−1)/2 of its exact weighted share, k the
    /// number of variants (with one variant, exact; with two, within a half): the split follows the weights
    /// at every moment, not only on average.
    /// </summary>
    [Fact]
    public void Every_prefix_of_picks_stays_within_one_of_the_weighted_share()
    {
        var weights = Gen.Choose(0, 1000).Select(w => w / 10.0).ArrayOf().Where(a => a.Length is > 0 and <= 6 && a.Sum() > 0);
        Prop.ForAll(weights.ToArbitrary(), Gen.Choose(1, 300).ToArbitrary(), (double[] w, int picks) =>
        {
            var variants = w.Select((weight, i) => new VariantRoute($"v{i}", "http://x", weight)).ToList();
            var chooser = new WeightedChooser<VariantRoute>(variants, v => v.Weight);
            var counts = new int[w.Length];
            double total = w.Sum();
            for (int n = 1; n <= picks; n++)
            {
                counts[variants.IndexOf(chooser.Next())]++;
                for (int i = 0; i < w.Length; i++)
                    if (Math.Abs(counts[i] - n * w[i] / total) > Math.Max(0.5, (w.Length - 1) / 2.0) + 1e-9) return false;
            }
            return true;
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(300));
    }

    [Fact]
    public void Integer_weights_give_exact_counts_over_each_cycle()
    {
        var variants = new[] { 5.0, 1, 3 }.Select((w, i) => new VariantRoute($"v{i}", "http://x", w)).ToList();
        var chooser = new WeightedChooser<VariantRoute>(variants, v => v.Weight);
        var picks = Enumerable.Range(0, 9 * 4).Select(_ => chooser.Next().Name).ToList();
        Assert.Equal(20, picks.Count(p => p == "v0"));
        Assert.Equal(4, picks.Count(p => p == "v1"));
        Assert.Equal(12, picks.Count(p => p == "v2"));
        Assert.NotEqual(["v0", "v0", "v0", "v0", "v0"], picks.Take(5)); // spread out, not bunched
    }
}
