# Multicoil MRI reconstruction from k-space (snakemake mri; docs/methods.md section 11):
# extraction with ESPIRiT maps, priors on complex images, classical baselines with
# their lam tuned on the tuning slices, the diffusion grid, the table and a figure.


rule mri_extract_shard:
    input:
        shard_volumes,
    output:
        temp(layout.MRI_SHARD),
    log:
        f"{LOGS}/mri/extract/{{dataset}}_{{split}}_{{shard}}.log",
    benchmark:
        f"{LOGS}/benchmarks/mri/extract/{{dataset}}_{{split}}_{{shard}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=60,
    params:
        root=str(plan.root),
        options=(
            f"--image-size {MRI['image_size']} --calib-width {MRI['calib_width']}"
            f" --edge-slices {DATA['edge_slices']}"
            f" --scale-percentile {DATA['scale_percentile']}"
            + (f" --coils {MRI['coils']}" if MRI.get("coils") else "")
        ),
        code=command_code("mri-extract"),
    shell:
        "patchpnp mri-extract {input:q} --split {wildcards.split} --output {output:q}"
        " {params.options} --root {params.root:q} > {log} 2>&1"


rule mri_merge_split:
    input:
        mri_shards,
    output:
        layout.MRI_SPLIT,
    log:
        f"{LOGS}/mri/merge/{{dataset}}_{{split}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=command_code("merge"),
    shell:
        "patchpnp merge {input:q} --output {output:q} > {log} 2>&1"


rule mri_train_prior:
    input:
        mri_plan.train_files(),
    output:
        weights=layout.MRI_PRIOR,
        settings=f"{layout.MRI_PRIOR_DIR}/settings.yaml",
        log_csv=f"{layout.MRI_PRIOR_DIR}/train_log.csv",
        curve=f"{layout.MRI_PRIOR_DIR}/loss.png",
    log:
        f"{LOGS}/mri/train/{{prior}}.log",
    benchmark:
        f"{LOGS}/benchmarks/mri/train/{{prior}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: lambda wc: mri_prior_settings(wc.prior)["training"]["threads"]
    resources:
        mem_mb=lambda wc, attempt: 8000 * attempt,
        runtime=lambda wc, attempt: 24 * 60 * attempt,
        gpu=lambda wc: gpus_for(mri_prior_settings(wc.prior)["training"]["processes"]),
    params:
        rule="mri_train_prior",
        settings=lambda wc: json.dumps(mri_prior_settings(wc.prior)),
        launcher=lambda wc: launcher(
            mri_prior_settings(wc.prior)["training"]["processes"]
        ),
        device=config["device"],
        code=command_code("train"),
    shell:
        "PATCHPNP_RULE={params.rule} {params.launcher} train {input:q} --out-dir $(dirname {output.weights:q})"
        " --settings {params.settings:q} --threads {threads} --device {params.device}"
        " > {log} 2>&1"


# The classical baselines' lam, from a log grid on the tuning slices.
rule mri_tune_baseline:
    input:
        layout.MRI_SPLIT.replace("{split}", "tune"),
    output:
        layout.MRI_TUNE,
    log:
        f"{LOGS}/mri/tune/{{dataset}}/{{mask}}_x{{acceleration}}/{{method}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        acquisition=mri_acquisition_options,
        grid=lambda wc: MRI["baselines"][wc.method],
        code=command_code("mri-tune"),
    shell:
        "patchpnp mri-tune {input:q} --output {output:q} --method {wildcards.method}"
        " {params.acquisition} --lam-center {params.grid[lam_center]}"
        " --decades {params.grid[decades]} --points {params.grid[points]}"
        " --iters {params.grid[iters]} --threads {threads} > {log} 2>&1"


# The diffusion solvers' lam (DiffPIR) / zeta (DPS) per prior and acquisition, on a
# log grid of two decades around the config's value (7 points, as `snakemake tune`),
# whole-image inference. Not part of `mri`: run `snakemake mri_tune` and copy the
# chosen values into mri.solvers.<solver>(.accelerations.<R>).
rule mri_tune_solver:
    input:
        data=layout.MRI_SPLIT.replace("{split}", "tune"),
        prior=layout.MRI_PRIOR,
    output:
        layout.MRI_TUNE_SOLVER,
    log:
        f"{LOGS}/mri/tune/{{dataset}}/{{mask}}_x{{acceleration}}/{{prior}}/{{solver}}.log",
    benchmark:
        f"{LOGS}/benchmarks/mri/tune/{{dataset}}/{{mask}}_x{{acceleration}}/{{prior}}/{{solver}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: MRI["threads"]
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 120 * attempt,
        gpu=gpus_for(1),
    params:
        rule="mri_tune_solver",
        acquisition=mri_acquisition_options,
        solver=lambda wc: json.dumps(mri_plan.solver_params(wc.solver, wc.acceleration)),
        center=lambda wc: mri_plan.tuned_value(wc.solver, wc.acceleration),
        options=f"--precision {MRI['precision']} --device {config['device']}",
        code=command_code("mri-tune"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp mri-tune {input.data:q} --output {output:q} --method diffusion"
        " {params.acquisition} --solver {wildcards.solver}"
        " --solver-params {params.solver:q} --prior {input.prior:q}"
        " --lam-center {params.center} --decades 1 --points 7 {params.options}"
        " --threads {threads} > {log} 2>&1"


rule mri_tune:
    input:
        mri_plan.solver_tuning_files(),


rule mri_classical:
    input:
        data=layout.MRI_SPLIT.replace("{split}", "eval"),
        lam=lambda wc: (
            [] if wc.method == "zero_filled" else [layout.MRI_TUNE.format(**wc)]
        ),
    output:
        recon=f"{layout.MRI_CLASSICAL}.h5",
        metrics=f"{layout.MRI_CLASSICAL}.csv",
    log:
        f"{LOGS}/mri/cells/{{dataset}}/{{mask}}_x{{acceleration}}/{{method}}.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        acquisition=mri_acquisition_options,
        lam=lambda wc, input: f"--lam-file {input.lam[0]}" if input.lam else "",
        iters=lambda wc: (
            f"--iters {MRI['baselines'][wc.method]['iters']}"
            if wc.method in MRI["baselines"]
            else ""
        ),
        code=command_code("mri-cell"),
    shell:
        "patchpnp mri-cell {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --dataset {wildcards.dataset} --method {wildcards.method} {params.acquisition}"
        " {params.lam} {params.iters} --device cpu --threads {threads} > {log} 2>&1"


rule mri_cell:
    input:
        data=layout.MRI_SPLIT.replace("{split}", "eval"),
        prior=layout.MRI_PRIOR,
    output:
        recon=f"{layout.MRI_CELL}.h5",
        metrics=f"{layout.MRI_CELL}.csv",
    log:
        f"{LOGS}/mri/cells/{{dataset}}/{{mask}}_x{{acceleration}}/{{prior}}/{{solver}}/{{size}}.log",
    benchmark:
        f"{LOGS}/benchmarks/mri/cells/{{dataset}}/{{mask}}_x{{acceleration}}/{{prior}}/{{solver}}/{{size}}.tsv"
    conda:
        "../envs/patchpnp.yaml"
    threads: MRI["threads"]
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 120 * attempt,
        gpu=gpus_for(1),
    params:
        rule="mri_cell",
        acquisition=mri_acquisition_options,
        solver=lambda wc: json.dumps(mri_plan.solver_params(wc.solver, wc.acceleration)),
        size=lambda wc: parse_size(wc.size),
        options=(
            f"--padding {MRI['padding']} --precision {MRI['precision']}"
            f" --device {config['device']}"
            + (
                f" --patch-batch {MRI['patch_batch']}"
                if MRI.get("patch_batch")
                else ""
            )
        ),
        code=command_code("mri-cell"),
    shell:
        "PATCHPNP_RULE={params.rule} patchpnp mri-cell {input.data:q} --recon {output.recon:q} --metrics {output.metrics:q}"
        " --dataset {wildcards.dataset} --method diffusion {params.acquisition}"
        " --solver {wildcards.solver} --solver-params {params.solver:q}"
        " --prior {input.prior:q} --size {params.size} {params.options}"
        " --threads {threads} > {log} 2>&1"


rule mri_table:
    input:
        mri_plan.metrics_files(),
    output:
        csv=report(
            f"{layout.MRI_TABLE}.csv", caption="../report/mri.rst", category="MRI"
        ),
        md=f"{layout.MRI_TABLE}.md",
    log:
        f"{LOGS}/mri/table.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stem=lambda wc, output: os.path.splitext(output.csv)[0],
        seed=config["seed"],
        code=command_code("mri-table"),
    shell:
        "patchpnp mri-table {input:q} --output {params.stem:q} --seed {params.seed}"
        " > {log} 2>&1"


rule figure_mri:
    input:
        [p for row in mri_plan.figure_rows() for _, p in row["panels"]],
        [row["gt"] for row in mri_plan.figure_rows()],
    output:
        png=report(
            f"{layout.MRI_FIGURE}.png", caption="../report/mri.rst", category="MRI"
        ),
        pdf=f"{layout.MRI_FIGURE}.pdf",
    log:
        f"{LOGS}/mri/figure.log",
    conda:
        "../envs/patchpnp.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        rows=json.dumps(mri_plan.figure_rows()),
        stem=lambda wc, output: os.path.splitext(output.png)[0],
        code=command_code("figure"),
    shell:
        "patchpnp figure mri {params.rows:q} --out-stem {params.stem:q} > {log} 2>&1"


rule mri:
    input:
        mri_plan.targets(),
