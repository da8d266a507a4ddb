# The check a user runs first on one GPU (not in all): every kind of job once at the
# paper's sizes with random-weight networks, its seconds and peak CUDA memory, and
# a whole-image DiffPIR cell on CUDA against the CPU (patchpnp.evaluation.gpu_check).
# On a machine without a CUDA GPU it stops at once and says what it found.


rule gpu_check:
    input:
        workflow_path(PAPER_SCALE["network_config"]),
    output:
        csv=layout.GPU_CHECK,
        summary=layout.GPU_CHECK_SUMMARY,
    log:
        f"{LOGS}/gpu_check.log",
    benchmark:
        f"{LOGS}/benchmarks/gpu_check.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 32000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
        gpu=1,
    params:
        rule="gpu_check",
        code=command_code("gpu-check"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp gpu-check --config {input:q}"
        " --output {output.csv:q} --summary {output.summary:q} --threads {threads}"
        " > {log} 2>&1"
