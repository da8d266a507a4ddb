# The experiment grid: one job per (dataset, prior, solver, task, size, padding)
# and one measurement baseline per (dataset, task).


# LPIPS's ImageNet AlexNet weights, fetched once into resources/ by a local rule (on
# a cluster it runs on the submitting node: jobs never download). It always writes
# the status, and the weights when they can be had (patchpnp.metrics.lpips_weights);
# every inference cell waits for the status and reads the weights from resources/.
rule lpips_weights:
    output:
        layout.LPIPS_STATUS,
    log:
        f"{LOGS}/lpips_weights.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        weights=layout.LPIPS_WEIGHTS,
        mode=LPIPS,
        source=LPIPS_SOURCE,
        # Goes up when the disk no longer matches the status (weights appeared after
        # "unavailable", or vanished after "available"): the change reruns the rule,
        # and with it the cells.
        generation=status_generation(layout.LPIPS_STATUS, layout.LPIPS_WEIGHTS),
        code=command_code("lpips-weights"),
    shell:
        "patchpnp lpips-weights --output {params.weights:q} --status {output:q}"
        " --mode {params.mode} --source {params.source:q}"
        " --generation {params.generation} > {log} 2>&1"


# The memory model of a prior's network on this device, for patch_batch auto: the
# largest micro-batch within inference.memory_budget (patchpnp.patching.micro_batch).
rule calibrate_memory:
    input:
        prior=layout.PRIOR,
    output:
        layout.CALIBRATION,
    log:
        f"{LOGS}/calibration/{{prior}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=30,
        gpu=gpus_for(1),
    params:
        rule="calibrate_memory",
        device=config["device"],
        precision=INFER["precision"],
        code=command_code("calibrate"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp calibrate --prior {input.prior:q} --output {output:q}"
        " --device {params.device} --precision {params.precision}"
        " --threads {threads} > {log} 2>&1"


rule infer_cell:
    input:
        data=layout.SPLIT.replace("{split}", "eval"),
        prior=layout.PRIOR,
        lpips=lpips_input(),
        calibration=calibration_input,
    output:
        recon=layout.CELL_RECON,
        metrics=layout.CELL_METRICS,
    log:
        f"{LOGS}/infer/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.log",
    benchmark:
        f"{LOGS}/benchmarks/infer/{{dataset}}/{{prior}}/{{solver}}/{{task}}/{{size}}-{{padding}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        gpu=gpus_for(1),
    params:
        rule="infer_cell",
        task=lambda wc: json.dumps(INFER["tasks"][wc.task]),
        solver=lambda wc: json.dumps(plan.solver_params(wc.solver, wc.task, wc.prior)),
        # Package code is invisible to Snakemake: the digest of everything
        # `patchpnp infer` imports reruns these jobs when that code changes.
        code=command_code("infer"),
        size=lambda wc: parse_size(wc.size),
        padding=lambda wc: "reflect" if wc.padding == "none" else wc.padding,
        options=inference_options(),
        calibration=calibration_option,
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp infer {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --task {wildcards.task} --task-params {params.task:q}"
        " --solver {wildcards.solver} --solver-params {params.solver:q}"
        " --prior {input.prior:q} --size {params.size} --padding {params.padding}"
        " --threads {threads} {params.options} {params.calibration} > {log} 2>&1"


rule infer_baseline:
    input:
        data=layout.SPLIT.replace("{split}", "eval"),
        lpips=lpips_input(),
    output:
        recon=layout.BASELINE_RECON,
        metrics=layout.BASELINE_METRICS,
    log:
        f"{LOGS}/infer/{{dataset}}/baseline/{{task}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task=lambda wc: json.dumps(INFER["tasks"][wc.task]),
        options=inference_options(),
        code=command_code("infer"),
    shell:
        "patchpnp infer {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --task {wildcards.task} --task-params {params.task:q} --solver baseline"
        " --threads {threads} {params.options} > {log} 2>&1"


rule infer:
    input:
        plan.cell_files("metrics"),


# Tuning (docs/methods.md section 8): lambda / zeta per (prior, solver, task) on the
# tuning slices, disjoint from the evaluation slices. Not part of `all`: run
# `snakemake tune` and copy results/tune/chosen.yaml into the config.
rule tune_solver:
    input:
        data=plan.tune_files(),
        prior=layout.PRIOR,
    output:
        layout.TUNE,
    log:
        f"{LOGS}/tune/{{prior}}/{{solver}}/{{task}}.log",
    benchmark:
        f"{LOGS}/benchmarks/tune/{{prior}}/{{solver}}/{{task}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: INFER.get("threads", 1)
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 240 * attempt,
        gpu=gpus_for(1),
    params:
        rule="tune_solver",
        task=lambda wc: json.dumps(INFER["tasks"][wc.task]),
        solver=lambda wc: json.dumps(plan.solver_params(wc.solver, wc.task, wc.prior)),
        code=command_code("tune"),
        seed=config["seed"],
        batch=INFER["batch_images"],
        device=config["device"],
        precision=INFER["precision"],
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp tune {input.data:q} --output {output:q} --prior {input.prior:q}"
        " --solver {wildcards.solver} --task {wildcards.task} --task-params {params.task:q}"
        " --solver-params {params.solver:q} --seed {params.seed}"
        " --batch-images {params.batch} --threads {threads} --device {params.device}"
        " --precision {params.precision} > {log} 2>&1"


rule tune_summary:
    input:
        expand(
            layout.TUNE,
            prior=list(config["priors"]),
            solver=list(INFER["solvers"]),
            task=list(INFER["tasks"]),
        ),
    output:
        layout.TUNE_CHOSEN,
    log:
        f"{LOGS}/tune/summary.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "patchpnp tune-summary {input:q} --output {output:q} > {log} 2>&1"


rule tune:
    input:
        layout.TUNE_CHOSEN,
