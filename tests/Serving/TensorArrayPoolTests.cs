using Adaptive.ModelServer.Protocol;

namespace Adaptive.Tests.Serving;

public sealed class TensorArrayPoolTests
{
    [Fact]
    public void A_returned_array_is_handed_out_again_for_the_same_type_and_length_only()
    {
        var pool = new TensorArrayPool(1 << 20);
        var image = pool.Rent(TensorDataType.Fp32, 3072);
        Assert.Equal(3072, Assert.IsType<float[]>(image).Length);
        pool.Return(TensorDataType.Fp32, image);
        Assert.Equal(3072 * 4, pool.RetainedBytes);

        Assert.NotSame(image, pool.Rent(TensorDataType.Fp32, 3071));
        Assert.IsType<int[]>(pool.Rent(TensorDataType.Int32, 3072));
        Assert.Same(image, pool.Rent(TensorDataType.Fp32, 3072));
        Assert.Equal(0, pool.RetainedBytes);
        Assert.NotSame(image, pool.Rent(TensorDataType.Fp32, 3072));
    }

    [Fact]
    public void It_keeps_no_more_than_its_bound()
    {
        var pool = new TensorArrayPool(10_000);
        var arrays = Enumerable.Range(0, 5).Select(_ => pool.Rent(TensorDataType.Int64, 500)).ToList(); // 4,000 bytes each
        arrays.ForEach(a => pool.Return(TensorDataType.Int64, a));
        Assert.Equal(8_000, pool.RetainedBytes);
        Assert.Same(arrays[1], pool.Rent(TensorDataType.Int64, 500)); // the last kept, first out
    }

    /// <summary>When it is full of sizes no longer asked for, a miss empties it, so that the sizes in use can be kept.</summary>
    [Fact]
    public void When_full_of_other_sizes_a_miss_makes_room()
    {
        var pool = new TensorArrayPool(8_000);
        var old = new[] { pool.Rent(TensorDataType.Fp64, 500), pool.Rent(TensorDataType.Fp64, 500) };
        foreach (var a in old) pool.Return(TensorDataType.Fp64, a);
        Assert.Equal(8_000, pool.RetainedBytes);

        var current = pool.Rent(TensorDataType.Fp32, 1000);
        Assert.Equal(0, pool.RetainedBytes);
        pool.Return(TensorDataType.Fp32, current);
        Assert.Same(current, pool.Rent(TensorDataType.Fp32, 1000));
    }
}
