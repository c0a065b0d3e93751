namespace Adaptive.Experiments;

public static class ExitCodes
{
    public const int Ok = 0;
    public const int InvalidInput = 2;
    public const int Infeasible = 3;
}
