// Regions, sizes and images the simulator knows, in the API's shapes.

export interface RegionDef {
  slug: string;
  name: string;
}

export interface SizeDef {
  slug: string;
  memory: number;
  vcpus: number;
  disk: number;
  transfer: number;
  priceMonthly: number;
  description: string;
  /** Regions offering it; undefined = every region. */
  regions?: readonly string[];
}

export const REGIONS: readonly RegionDef[] = [
  { slug: 'nyc1', name: 'New York 1' },
  { slug: 'nyc3', name: 'New York 3' },
  { slug: 'sfo3', name: 'San Francisco 3' },
  { slug: 'ams3', name: 'Amsterdam 3' },
  { slug: 'fra1', name: 'Frankfurt 1' },
  { slug: 'lon1', name: 'London 1' },
  { slug: 'sgp1', name: 'Singapore 1' },
  { slug: 'tor1', name: 'Toronto 1' },
  { slug: 'blr1', name: 'Bangalore 1' },
  { slug: 'syd1', name: 'Sydney 1' },
  { slug: 'atl1', name: 'Atlanta 1' },
];

/** Where the $4 size exists (a made-up but fixed subset: "only in some regions"). */
export const SMALLEST_SIZE_REGIONS: readonly string[] = ['nyc1', 'sfo3', 'ams3', 'fra1', 'sgp1', 'syd1'];

export const SIZES: readonly SizeDef[] = [
  {
    slug: 's-1vcpu-512mb-10gb',
    memory: 512,
    vcpus: 1,
    disk: 10,
    transfer: 0.5,
    priceMonthly: 4,
    description: 'Basic',
    regions: SMALLEST_SIZE_REGIONS,
  },
  { slug: 's-1vcpu-1gb', memory: 1024, vcpus: 1, disk: 25, transfer: 1, priceMonthly: 6, description: 'Basic' },
  { slug: 's-1vcpu-2gb', memory: 2048, vcpus: 1, disk: 50, transfer: 2, priceMonthly: 12, description: 'Basic' },
  { slug: 's-2vcpu-2gb', memory: 2048, vcpus: 2, disk: 60, transfer: 3, priceMonthly: 18, description: 'Basic' },
  { slug: 's-2vcpu-4gb', memory: 4096, vcpus: 2, disk: 80, transfer: 4, priceMonthly: 24, description: 'Basic' },
  { slug: 's-4vcpu-8gb', memory: 8192, vcpus: 4, disk: 160, transfer: 5, priceMonthly: 48, description: 'Basic' },
];

export const REGION_FEATURES = ['backups', 'ipv6', 'metadata', 'install_agent', 'storage', 'image_transfer'];

export interface ImageDef {
  id: number;
  slug: string;
  name: string;
  distribution: string;
}

export const IMAGES: readonly ImageDef[] = [
  { id: 129211873, slug: 'ubuntu-22-04-x64', name: '22.04 (LTS) x64', distribution: 'Ubuntu' },
  { id: 160232537, slug: 'ubuntu-24-04-x64', name: '24.04 (LTS) x64', distribution: 'Ubuntu' },
  { id: 152813539, slug: 'debian-12-x64', name: '12 x64', distribution: 'Debian' },
];

export function findRegion(slug: unknown): RegionDef | undefined {
  return REGIONS.find((r) => r.slug === slug);
}

export function findSize(slug: unknown): SizeDef | undefined {
  return SIZES.find((s) => s.slug === slug);
}

export function findImage(idOrSlug: unknown): ImageDef | undefined {
  return IMAGES.find((i) => i.slug === idOrSlug || i.id === idOrSlug);
}

export function sizeRegions(size: SizeDef): string[] {
  return REGIONS.map((r) => r.slug).filter((slug) => !size.regions || size.regions.includes(slug));
}

export function sizeAvailableIn(size: SizeDef, region: string): boolean {
  return sizeRegions(size).includes(region);
}

export function renderRegion(region: RegionDef): Record<string, unknown> {
  return {
    name: region.name,
    slug: region.slug,
    features: [...REGION_FEATURES],
    available: true,
    sizes: SIZES.filter((s) => sizeAvailableIn(s, region.slug)).map((s) => s.slug),
  };
}

export function renderSize(size: SizeDef): Record<string, unknown> {
  return {
    slug: size.slug,
    memory: size.memory,
    vcpus: size.vcpus,
    disk: size.disk,
    transfer: size.transfer,
    price_monthly: size.priceMonthly,
    price_hourly: Math.round((size.priceMonthly / 672) * 1e5) / 1e5,
    regions: sizeRegions(size),
    available: true,
    description: size.description,
    disk_info: [{ type: 'local', size: { amount: size.disk, unit: 'gib' } }],
  };
}

export function renderImage(image: ImageDef): Record<string, unknown> {
  return {
    id: image.id,
    name: image.name,
    distribution: image.distribution,
    slug: image.slug,
    public: true,
    regions: REGIONS.map((r) => r.slug),
    created_at: '2024-04-25T00:00:00Z',
    type: 'base',
    min_disk_size: 7,
    size_gigabytes: 2.36,
    description: `${image.distribution} ${image.name}`,
    tags: [],
    status: 'available',
    error_message: '',
  };
}
